"""Aligned chips on real faces: level eyes, the ArcFace template, dlib's own chips, the border."""

from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest

from app.inference import Face, LandmarkPredictor
from app.inference.align import (
    ARCFACE_112,
    align_face,
    chip_transform,
    dlib_chip_transform,
    five_points,
    warp_chip,
)
from app.inference.imaging import decode_image
from tests.conftest import DATA, LFPW, PHOTOS

AFLW = DATA / "aflw2000" / "train"


@pytest.fixture(scope="module")
def predictor(model_path: Path) -> LandmarkPredictor:
    return LandmarkPredictor.from_checkpoint(model_path)


@pytest.fixture(scope="module")
def faces(predictor: LandmarkPredictor) -> list[tuple[np.ndarray, Face]]:
    """Every face of the LFPW samples, two AFLW2000-3D photos and the group photo (31 faces)."""
    paths = [*sorted(LFPW.glob("*.png")), AFLW / "image00002.jpg", AFLW / "image00008.jpg"]
    paths.append(PHOTOS / "bald_guys.jpg")
    out = []
    for path in paths:
        image = decode_image(path.read_bytes(), 10**8)
        out += [(image, face) for face in predictor.predict(image)]
    assert len(out) >= 30
    return out


def in_chip(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


@pytest.mark.parametrize("template", ["arcface", "dlib"])
@pytest.mark.parametrize("size", [112, 150, 512])
def test_the_eye_line_is_level_in_the_chip(faces, template: str, size: int) -> None:
    for _, face in faces:
        points = in_chip(chip_transform(face.landmarks, size, template), face.landmarks)
        left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
        angle = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
        assert abs(angle) <= 1.0


def test_near_frontal_faces_land_on_the_arcface_template_at_112(faces) -> None:
    """|yaw| and |pitch| <= 15 degrees: the five points land 2 px from the template on average (the
    issue's bound), eyes and mouth corners a median of at most 2 px, the nose tip 3 px. A similarity
    cannot fit every face's proportions (an open mouth, a long nose), so single faces may have a point
    3-6 px off (measured)."""
    frontal = [f for _, f in faces if abs(f.pose.yaw) <= 15 and abs(f.pose.pitch) <= 15]
    assert len(frontal) >= 10
    distances = np.array(
        [
            np.linalg.norm(
                five_points(in_chip(chip_transform(f.landmarks, 112), f.landmarks)) - ARCFACE_112, axis=1
            )
            for f in frontal
        ]
    )
    medians = np.median(distances, axis=0)
    # Measured with 2.1.0's points (20 near-frontal faces): medians 1.23 and 1.13 px (eye centres), 2.69
    # (nose), 1.51 and 1.47 (mouth corners), 1.81 px on average. With the bare points 30, 48 and 54 as
    # nose and mouth corners the average was 1.98 px (2.08 with 2.0.0's points).
    assert (medians[[0, 1, 3, 4]] <= 2.0).all(), "eye centres and mouth corners"
    # The nose varies most between faces (its length against the eye-mouth distance): 3 px.
    assert medians[2] <= 3.0
    assert distances.mean() <= 2.0


def test_the_template_scales_with_the_size(faces) -> None:
    _, face = faces[0]
    small = chip_transform(face.landmarks, 112, "arcface")
    large = chip_transform(face.landmarks, 448, "arcface")
    np.testing.assert_allclose(large, small * 4.0, atol=1e-9)


def test_the_dlib_transform_gives_dlibs_own_chip(faces) -> None:
    image, face = faces[0]
    chip = warp_chip(image, dlib_chip_transform(face.landmarks, 150), 150)
    shape = dlib.full_object_detection(
        dlib.rectangle(face.box.left, face.box.top, face.box.right, face.box.bottom),
        [dlib.point(round(x), round(y)) for x, y in face.landmarks],
    )
    reference = dlib.get_face_chip(image, shape, size=150, padding=0.25)
    difference = np.abs(chip.astype(int) - reference.astype(int))
    assert chip.shape == reference.shape == (150, 150, 3)
    assert difference.mean() < 2.0 and np.percentile(difference, 99) < 20


def test_a_chip_past_the_border_is_padded_as_asked(predictor) -> None:
    image = decode_image((LFPW / "image_0001.png").read_bytes(), 10**8)
    face = predictor.predict(image)[0]
    # Cut the photo through the face: the chip now reaches past the left border.
    cut = np.ascontiguousarray(image[:, int(face.landmarks[:, 0].mean()) :])
    face = predictor.predict(cut)[0] if predictor.predict(cut) else None
    landmarks = face.landmarks if face else None
    if landmarks is None:  # the half face may go undetected: the cut's own points then serve
        landmarks = predictor.predict(image)[0].landmarks - (int(image.shape[1] / 2), 0)
    black = align_face(cut, landmarks, 112, "arcface", "black").chip
    replicate = align_face(cut, landmarks, 112, "arcface", "replicate").chip
    outside = (black == 0).all(axis=2)
    assert outside[:, :20].mean() > 0.5, "the left of the chip lies outside the photo and is black"
    assert (replicate == 0).all(axis=2).mean() < 0.01, "replicate fills it with edge pixels"
    # Inside the photo (away from the border's one-pixel bilinear blend) both chips are the same.
    near_border = cv2.dilate(outside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    np.testing.assert_array_equal(black[~near_border], replicate[~near_border])


def test_the_levelled_dlib_chip_keeps_dlibs_centre_and_scale(faces) -> None:
    for _, face in faces:
        exact, levelled = (
            dlib_chip_transform(face.landmarks, 150),
            chip_transform(face.landmarks, 150, "dlib"),
        )
        centre = np.array([74.5, 74.5])
        np.testing.assert_allclose(
            np.linalg.solve(exact[:, :2], centre - exact[:, 2]),
            np.linalg.solve(levelled[:, :2], centre - levelled[:, 2]),
            atol=1e-6,
        )
        assert np.linalg.det(levelled[:, :2]) == pytest.approx(np.linalg.det(exact[:, :2]))
