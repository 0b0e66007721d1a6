"""FaceTracker on real faces: ids that stay, a detector that runs only when it must, tracks that end and
merge, and smoothing that can be turned off."""

import dataclasses

import cv2
import numpy as np
import pytest

from app.config import Settings, build_predictor
from app.inference import LandmarkPredictor
from app.inference.imaging import decode_image
from app.inference.tracking import FaceTracker, TrackerOptions
from tests.conftest import LFPW, SHIPPED_MODEL
from tests.media import clip_frames

FPS = 25.0


@pytest.fixture(scope="module")
def predictor() -> LandmarkPredictor:
    return build_predictor(Settings(model_path=SHIPPED_MODEL))


@pytest.fixture(scope="module")
def talking() -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in clip_frames("talking_head.mp4", 40)]


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return decode_image((LFPW / "image_0001.png").read_bytes(), 40_000_000)


class CountingDetector:
    """The predictor's own detector, counting its calls."""

    def __init__(self, detector) -> None:
        self.detector, self.calls = detector, 0

    def __getattr__(self, name: str):
        return getattr(self.detector, name)

    def detect(self, image, upsample=0):
        self.calls += 1
        return self.detector.detect(image, upsample)


def _track(predictor, frames, **options) -> tuple[FaceTracker, list]:
    tracker = FaceTracker(predictor, TrackerOptions(**options))
    return tracker, [tracker.update(frame, i / FPS) for i, frame in enumerate(frames)]


def test_a_talking_head_keeps_one_track_and_the_detector_runs_every_k_frames(predictor, talking) -> None:
    counting = CountingDetector(predictor.detector)
    original, predictor.detector = predictor.detector, counting
    try:
        tracker, faces = _track(predictor, talking, detect_every=10)
    finally:
        predictor.detector = original
    assert all(len(found) == 1 for found in faces)
    assert {found[0].track_id for found in faces} == {1}
    assert counting.calls == tracker.detector_runs == 4  # frames 0, 10, 20, 30 of 40
    assert [found[0].detected for found in faces[:11]] == [True] + [False] * 9 + [True]
    assert tracker.summary == {"frames": 40, "tracks": 1, "detector_runs": 4}


def test_followed_points_match_the_photo_path_on_a_still_face(predictor, portrait) -> None:
    photo = predictor.predict(portrait, "auto")[0]
    _, faces = _track(predictor, [portrait] * 5, smoothing=False)
    followed = faces[-1][0].face
    error = np.linalg.norm(followed.landmarks - photo.landmarks, axis=1).mean()
    assert error < 0.01 * photo.box.width
    # The box is the detector's, placed again from the followed points.
    corners = [(b.left, b.top, b.right, b.bottom) for b in (followed.box, photo.box)]
    np.testing.assert_allclose(*corners, atol=2)
    assert followed.error_estimate is not None and followed.error_estimate < 0.05


def test_a_face_that_leaves_the_frame_ends_its_track(predictor, portrait) -> None:
    height, width = portrait.shape[:2]
    frames = []
    for step in range(12):  # the face slides out to the right, 10 % of the width per frame
        shift = np.float32([[1, 0, step * 0.1 * width], [0, 1, 0]])
        frames.append(cv2.warpAffine(portrait, shift, (width, height)))
    _, faces = _track(predictor, frames, detect_every=100)
    ids = [[f.track_id for f in found] for found in faces]
    assert ids[0] == [1]
    assert ids[-1] == []
    assert {i for found in ids for i in found} == {1}  # never a second id while it was in view


def test_a_face_that_vanishes_ends_its_track_at_once(predictor, portrait) -> None:
    blank = np.full_like(portrait, 128)
    tracker, faces = _track(predictor, [portrait, portrait, blank, blank], detect_every=100)
    assert [len(found) for found in faces] == [1, 1, 0, 0]
    assert tracker.detector_runs == 3  # the first frame, the lost one, the empty one


def test_two_tracks_on_one_face_merge_into_the_older(predictor, portrait) -> None:
    tracker = FaceTracker(predictor, TrackerOptions(detect_every=100))
    tracker.update(portrait, 0.0)
    twin = dataclasses.replace(tracker.tracks[0], track_id=7, points=tracker.tracks[0].points + 3.0)
    tracker.tracks.append(twin)
    faces = tracker.update(portrait, 1 / FPS)
    assert [f.track_id for f in faces] == [1]


def test_smoothing_off_gives_the_raw_points(predictor, talking) -> None:
    _, raw = _track(predictor, talking[:6], smoothing=False)
    _, smooth = _track(predictor, talking[:6], smoothing=True)
    assert np.array_equal(raw[0][0].face.landmarks, smooth[0][0].face.landmarks)  # the first frame
    assert not np.allclose(raw[5][0].face.landmarks, smooth[5][0].face.landmarks, atol=1e-3)


def test_a_face_that_appears_is_picked_up_at_the_next_detection(predictor, portrait) -> None:
    blank = np.full_like(portrait, 128)
    _, faces = _track(predictor, [blank, blank, portrait, portrait], detect_every=100)
    assert [len(found) for found in faces] == [0, 0, 1, 1]  # no track: the detector runs every frame


def test_a_face_found_again_soon_near_where_its_track_ended_keeps_its_id(predictor, portrait) -> None:
    blank = np.full_like(portrait, 128)
    frames = [portrait, blank, blank, portrait]  # gone for 2 frames (0.08 s)
    _, faces = _track(predictor, frames, detect_every=100)
    assert [[f.track_id for f in found] for found in faces] == [[1], [], [], [1]]
    tracker = FaceTracker(predictor, TrackerOptions(detect_every=100, revive_seconds=1.0))
    ids = [
        [f.track_id for f in tracker.update(frame, t)]
        for frame, t in zip(frames, [0, 0.1, 0.2, 2.0], strict=True)
    ]
    assert ids == [[1], [], [], [2]], "after more than revive_seconds it is a new track"


def test_only_a_confident_detection_starts_a_track(predictor, portrait) -> None:
    (detection,) = predictor.detect(portrait, "auto")
    _, faces = _track(predictor, [portrait], min_start_score=detection.score + 0.01)
    assert faces == [[]]
    _, faces = _track(predictor, [portrait], min_start_score=detection.score - 0.01)
    assert len(faces[0]) == 1
