"""PhotoPipeline: bytes in, photos out; a photo is a batch of one, max_faces and the limits apply in one
place, and a batch reports its stages as a single photo does."""

import numpy as np
import pytest

from app.config import Settings, build_pipeline, build_predictor
from app.inference import InvalidImageError, TooManyPixelsError, UnsupportedMediaTypeError
from app.inference.pipeline import Photo, PhotoPipeline, Upload
from tests.conftest import LFPW, PHOTOS, SHIPPED_MODEL
from tests.inference.test_predictor import count_regress_calls

FACE = Upload((LFPW / "image_0001.png").read_bytes(), "image/png")
GROUP = Upload((PHOTOS / "bald_guys.jpg").read_bytes())
SMALL_FACES = Upload((PHOTOS / "2008_007676.jpg").read_bytes())


@pytest.fixture(scope="module")
def pipeline() -> PhotoPipeline:
    return build_pipeline(Settings(), build_predictor(Settings(model_path=SHIPPED_MODEL)))


def test_a_batch_gives_each_photo_what_it_gets_alone_and_errors_in_place(pipeline):
    batch = pipeline.run([FACE, Upload(b"not an image"), SMALL_FACES], "auto")
    first, refused, third = batch.results
    assert isinstance(refused, InvalidImageError)
    assert isinstance(first, Photo) and isinstance(third, Photo)
    assert batch.photos == [first, third]
    for upload, photo in ((FACE, first), (SMALL_FACES, third)):
        alone = pipeline.run([upload], "auto").single()
        assert photo.level == alone.level and photo.image.shape == alone.image.shape
        assert [(f.box, f.score) for f in photo.faces] == [(f.box, f.score) for f in alone.faces]
        for together, single in zip(photo.faces, alone.faces, strict=True):
            np.testing.assert_allclose(together.landmarks, single.landmarks, atol=1e-2)
    assert (first.level, third.level) == (1, 1) and len(third.faces) >= 6


def test_one_network_call_per_stage_and_the_same_stage_times_as_one_photo(pipeline, monkeypatch):
    calls = count_regress_calls(pipeline.predictor, monkeypatch)
    batch = pipeline.run([FACE, SMALL_FACES, Upload(b"")], 0)
    faces = sum(len(photo.faces) for photo in batch.photos)
    assert calls == [faces] * len(pipeline.predictor.stages)
    # decode and detect for each photo that decoded, one regression for all of them.
    assert [stage for stage, _ in batch.stage_seconds] == ["decode", "detect"] * 2 + ["regress"]
    assert all(seconds >= 0 for _, seconds in batch.stage_seconds)
    single = pipeline.run([FACE], 0)
    assert [stage for stage, _ in single.stage_seconds] == ["decode", "detect", "regress"]


def test_max_faces_keeps_the_largest(pipeline):
    every = pipeline.run([GROUP], 0).single().faces
    three = pipeline.run([GROUP], 0, max_faces=3).single().faces
    assert len(every) >= 20 and [f.box for f in three] == [f.box for f in every[:3]]
    assert [f.box.area for f in three] == sorted((f.box.area for f in every), reverse=True)[:3]


def test_refusals_are_raised_by_single_and_nothing_runs_for_them(pipeline, monkeypatch):
    calls = count_regress_calls(pipeline.predictor, monkeypatch)
    with pytest.raises(UnsupportedMediaTypeError, match="text/plain"):
        pipeline.run([Upload(b"hello", "text/plain")], 0).single()
    with pytest.raises(InvalidImageError):
        pipeline.run([Upload(b"hello")], 0).single()
    narrow = PhotoPipeline(pipeline.predictor, max_pixels=10**8, max_detect_pixels=1_000_000)
    with pytest.raises(TooManyPixelsError, match="upsample=2"):
        narrow.run([FACE], 2).single()
    assert narrow.run([FACE], 1).single().level == 1  # 412x600x4 pixels fit
    empty = pipeline.run([], "auto")
    assert empty.results == [] and empty.stage_seconds == []
    assert calls == [1] * len(pipeline.predictor.stages)  # only the one photo that passed


def test_the_json_of_a_photo(pipeline):
    photo = pipeline.run([FACE], "auto").single()
    body = photo.to_dict()
    assert body["image"] == {"width": 412, "height": 600} and body["detection"] == {"upsample": 1}
    assert body["faces"] == [face.to_dict() for face in photo.faces]
    assert photo.to_dict(faces=[]) == {**body, "faces": []}
    assert pipeline.model_ref() == {"name": pipeline.predictor.name, "version": pipeline.predictor.version}
