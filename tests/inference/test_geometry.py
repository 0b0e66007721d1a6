"""Box -> crop -> image geometry, shared by the service and training."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.inference.detector import Box
from app.inference.geometry import (
    Frame,
    crop_box,
    crop_frame,
    frames_to_image,
    landmark_frame,
    landmark_frames,
)
from training.pts import read_pts


def test_box_corners_map_to_crop_edges():
    frame = Frame.from_box(Box(10, 20, 109, 119))
    corners = frame.to_image(np.array([[0.0, 0.0], [1.0, 1.0]]))
    # dlib's inclusive box covers [left - 0.5, right + 0.5] in pixel-centre coordinates.
    np.testing.assert_allclose(corners, [[9.5, 19.5], [109.5, 119.5]])
    matrix = frame.crop_matrix(62)
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, [[-0.5, -0.5], [61.5, 61.5]])


def test_normalised_round_trip_with_rotation():
    frame = Frame(cx=50.3, cy=-4.0, width=80.0, height=90.0, angle=0.4)
    points = np.random.default_rng(0).uniform(-0.5, 1.5, size=(68, 2))
    np.testing.assert_allclose(frame.to_normalised(frame.to_image(points)), points, atol=1e-9)


def test_crop_of_a_box_partly_outside_keeps_the_box_geometry():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :50] = 255  # left half white
    # The box spans x = -50..49: its right half is the image's white left half, its left half is outside.
    crop = crop_box(image, Box(-50, 0, 49, 99), 62)
    assert crop.shape == (62, 62, 3)
    assert crop[:, :28].max() == 0  # outside the image: zero padding
    assert crop[:, 34:58].min() == 255  # inside: the white half, at the right place


def test_crop_of_a_box_wholly_outside_is_black():
    image = np.full((50, 50, 3), 200, np.uint8)
    assert crop_box(image, Box(300, 300, 499, 499), 62).max() == 0


def test_crop_resamples_a_marked_pixel_to_the_expected_place():
    image = np.zeros((400, 400), np.uint8)
    image[190:210, 290:310] = 255  # a bright square centred at (299.5, 199.5)
    box = Box(100, 100, 399, 399)
    crop = crop_frame(image, Frame.from_box(box), 62)
    ys, xs = np.nonzero(crop > 128)
    expected = Frame.from_box(box).to_normalised(np.array([299.5, 199.5])) * 62 - 0.5
    assert abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0


@pytest.mark.parametrize("side", [100, 124, 200, 217, 330])
def test_a_reduced_crop_matches_a_plain_area_average_of_the_frame(side: int) -> None:
    """Frames of 1.6 to 5.3 times the crop (the fractional and the whole-factor reductions): the crop is
    the frame's area average, within interpolation error, and nothing moves."""
    from app.inference.imaging import decode_image

    image = decode_image((HELEN.parent.parent / "samples" / "lfpw" / "image_0001.png").read_bytes(), 10**8)
    box = Box(40, 60, 40 + side - 1, 60 + side - 1)
    crop = crop_frame(image, Frame.from_box(box), 62).astype(float)
    reference = cv2.resize(image[60 : 60 + side, 40 : 40 + side], (62, 62), interpolation=cv2.INTER_AREA)
    difference = np.abs(crop - reference.astype(float))
    assert difference.mean() < 4.0 and np.percentile(difference, 99) < 30
    # Centre of mass of the brightness: the same place (no shift from the reduction), within 0.1 px.
    grid = np.arange(62)
    ours, area = crop.mean(axis=2), reference.astype(float).mean(axis=2)
    for axis in (0, 1):
        centre_ours = (ours.sum(axis=axis) * grid).sum() / ours.sum()
        centre_area = (area.sum(axis=axis) * grid).sum() / area.sum()
        assert abs(centre_ours - centre_area) < 0.1


HELEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "300w" / "helen_test"


def _rotate(points: np.ndarray, degrees: float, centre: np.ndarray) -> np.ndarray:
    """Rotate counter-clockwise as seen in the image (y down)."""
    a = np.deg2rad(degrees)
    matrix = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return (points - centre) @ matrix.T + centre


def test_landmark_frame_levels_the_eyes_and_holds_the_face():
    for pts in sorted(HELEN.glob("*.pts"))[:20]:
        points = read_pts(pts)
        frame = landmark_frame(points)
        inside = frame.to_normalised(points)
        eye_line = inside[42:48].mean(axis=0) - inside[36:42].mean(axis=0)
        assert abs(eye_line[1]) < 1e-9 and eye_line[0] > 0
        # Centred on the extent of the points, which fills most of the frame (5 % of faces overflow it).
        np.testing.assert_allclose(inside.min(axis=0) + inside.max(axis=0), [1.0, 1.0], atol=1e-9)
        assert 0.75 < (inside.max(axis=0) - inside.min(axis=0)).max() < 1.1, pts.name


def test_many_faces_at_once_give_each_face_s_frame_and_points():
    # The predictor frames and maps the faces of a photo together; that must equal doing it one by one.
    faces = np.stack([read_pts(pts) for pts in sorted(HELEN.glob("*.pts"))[:12]])
    frames = landmark_frames(faces)
    assert frames == [landmark_frame(points) for points in faces]
    normalised = np.random.default_rng(1).uniform(-0.2, 1.2, size=(len(faces), 68, 2))
    expected = np.stack([f.to_image(n) for f, n in zip(frames, normalised, strict=True)])
    np.testing.assert_allclose(frames_to_image(frames, normalised), expected, atol=1e-9)
    # A rotated frame's crop matrix inverts its own mapping to the image.
    inside = frames[0].to_image(normalised[0])
    matrix = frames[0].crop_matrix(62)
    np.testing.assert_allclose(inside @ matrix[:, :2].T + matrix[:, 2], normalised[0] * 62 - 0.5, atol=1e-9)


def test_landmark_frame_follows_rotation_scale_and_shift_of_the_face():
    points = read_pts(sorted(HELEN.glob("*.pts"))[0])
    frame = landmark_frame(points)
    centre = np.array([frame.cx, frame.cy])
    moved = _rotate(points, 25.0, centre) * 1.5 + np.array([40.0, -7.0])
    other = landmark_frame(moved)
    assert np.rad2deg(other.angle - frame.angle) == pytest.approx(25.0, abs=1e-6)
    assert other.width == pytest.approx(1.5 * frame.width)
    np.testing.assert_allclose([other.cx, other.cy], centre * 1.5 + [40.0, -7.0], atol=1e-6)
    # The same normalised points: the refinement stage sees every such face alike.
    np.testing.assert_allclose(other.to_normalised(moved), frame.to_normalised(points), atol=1e-9)


def test_landmark_frame_ignores_the_jaw_for_rotation_and_scale():
    points = read_pts(sorted(HELEN.glob("*.pts"))[1])
    moved_jaw = points.copy()
    moved_jaw[:17, 0] += np.linspace(-8.0, 8.0, 17)  # another convention's jaw
    a, b = landmark_frame(points), landmark_frame(moved_jaw)
    assert a.angle == pytest.approx(b.angle) and a.width == pytest.approx(b.width)
