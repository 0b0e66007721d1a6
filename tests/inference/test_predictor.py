"""LandmarkPredictor.predict_many: the same faces as predict, image by image, from one network call."""

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


@pytest.mark.parametrize("max_faces", [None, 3])
def test_predict_many_gives_what_predict_gives_for_each_image(predictor, images, max_faces):
    many = predictor.predict_many(images, 0, max_faces)
    assert [len(faces) for faces in many][:2] == [1, 0]
    assert len(many[2]) == 3 if max_faces else len(many[2]) >= 20
    for image, faces in zip(images, many, strict=True):
        alone = predictor.predict(image, 0, max_faces)
        assert [(f.box, f.score) for f in faces] == [(f.box, f.score) for f in alone]
        for batched, single in zip(faces, alone, strict=True):
            # oneDNN picks kernels by batch size: the same crops agree to a hundredth of a pixel.
            np.testing.assert_allclose(batched.landmarks, single.landmarks, atol=1e-2)


def test_the_faces_of_all_images_go_through_the_network_in_one_call(predictor, images, monkeypatch):
    calls = count_regress_calls(predictor, monkeypatch)
    many = predictor.predict_many(images)
    # One call per stage of the cascade, each over the faces of every image.
    assert calls == [sum(len(faces) for faces in many)] * len(predictor.stages)


def test_predict_many_of_nothing_and_of_faceless_images(predictor, images, monkeypatch):
    calls = count_regress_calls(predictor, monkeypatch)
    assert predictor.predict_many([]) == []
    assert predictor.predict_many([images[1], images[1]]) == [[], []]
    assert calls == []


def test_the_settings_switch_the_hard_face_flip(monkeypatch) -> None:
    served = build_predictor(Settings(model_path=SHIPPED_MODEL))
    assert served.hard_face_threshold is not None and not served.flip_test_time
    monkeypatch.setenv("LANDMARKS_FLIP_HARD_FACES", "false")
    assert build_predictor(Settings(model_path=SHIPPED_MODEL)).hard_face_threshold is None
    # Flipping every face makes the hard-face test moot.
    everything = build_predictor(Settings(model_path=SHIPPED_MODEL, flip_test_time=True))
    assert everything.flip_test_time and everything.hard_face_threshold is None
