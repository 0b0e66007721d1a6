"""LandmarkPredictor: the faces of several images are those of each image alone, from one network call per
stage; estimate with and without the detector's scores; the settings' hard-face flip."""

import numpy as np
import pytest

from app.config import Settings, build_predictor
from app.inference import LandmarkPredictor
from app.inference.imaging import decode_image
from tests.conftest import LFPW, PHOTOS, SHIPPED_MODEL

PATHS = [LFPW / "image_0001.png", PHOTOS / "dogs.jpg", PHOTOS / "bald_guys.jpg", LFPW / "image_0003.png"]


@pytest.fixture(scope="module")
def predictor() -> LandmarkPredictor:
    return build_predictor(Settings(model_path=SHIPPED_MODEL))


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [decode_image(path.read_bytes(), 10**8) for path in PATHS]


def count_regress_calls(predictor: LandmarkPredictor, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of crops of each call of a stage's network (the real networks run)."""
    calls: list[int] = []
    for stage in predictor.stages:

        def counted(crops: np.ndarray, regress=stage.regress) -> tuple[np.ndarray, np.ndarray | None]:
            calls.append(len(crops))
            return regress(crops)

        monkeypatch.setattr(stage, "regress", counted)
    return calls


def faces_together(predictor: LandmarkPredictor, images: list[np.ndarray], max_faces: int | None = None):
    return predictor.faces(images, [predictor.detect(image, 0)[:max_faces] for image in images])


@pytest.mark.parametrize("max_faces", [None, 3])
def test_faces_of_several_images_are_what_predict_gives_for_each_image(predictor, images, max_faces):
    many = faces_together(predictor, images, max_faces)
    assert [len(faces) for faces in many][:2] == [1, 0]
    assert len(many[2]) == 3 if max_faces else len(many[2]) >= 20
    for image, faces in zip(images, many, strict=True):
        alone = predictor.predict(image, 0)[:max_faces]
        assert [(f.box, f.score) for f in faces] == [(f.box, f.score) for f in alone]
        for batched, single in zip(faces, alone, strict=True):
            # Kernels may differ by batch size: the same crops agree to a hundredth of a pixel.
            np.testing.assert_allclose(batched.landmarks, single.landmarks, atol=1e-2)


def test_the_faces_of_all_images_go_through_the_network_in_one_call(predictor, images, monkeypatch):
    calls = count_regress_calls(predictor, monkeypatch)
    many = faces_together(predictor, images)
    # One call per stage of the cascade, each over the faces of every image.
    assert calls == [sum(len(faces) for faces in many)] * len(predictor.stages)


def test_faces_and_estimates_of_nothing_and_of_faceless_images(predictor, images, monkeypatch):
    calls = count_regress_calls(predictor, monkeypatch)
    assert predictor.faces([], []) == []
    assert faces_together(predictor, [images[1], images[1]]) == [[], []]
    ((points, errors),) = predictor.estimate([images[1]], [[]])
    assert points.shape == (0, 68, 2) and errors is None
    assert calls == []


def test_estimate_without_scores_is_the_error_heads_own_and_with_them_the_served_one(predictor, images):
    detections = predictor.detect(images[0], 0)
    (face,) = predictor.faces([images[0]], [detections])[0]
    ((points, raw),) = predictor.estimate([images[0]], [[d.box for d in detections]])
    ((_, served),) = predictor.estimate(
        [images[0]], [[d.box for d in detections]], [[d.score for d in detections]]
    )
    np.testing.assert_array_equal(points[0], face.landmarks)
    assert served is not None and raw is not None
    assert served[0] == face.error_estimate != raw[0]


def test_the_settings_switch_the_hard_face_flip(monkeypatch) -> None:
    served = build_predictor(Settings(model_path=SHIPPED_MODEL))
    assert served.hard_face_flip is not None and not served.flip_test_time
    monkeypatch.setenv("LANDMARKS_FLIP_HARD_FACES", "false")
    assert build_predictor(Settings(model_path=SHIPPED_MODEL)).hard_face_flip is None
    # Flipping every face makes the hard-face test moot.
    everything = build_predictor(Settings(model_path=SHIPPED_MODEL, flip_test_time=True))
    assert everything.flip_test_time and everything.hard_face_flip is None
