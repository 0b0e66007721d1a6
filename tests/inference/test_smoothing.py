"""The One-Euro filter: jitter of a still face goes, a moving face is followed without lag."""

import numpy as np

from app.inference.smoothing import OneEuroFilter, face_scale
from tests.conftest import LFPW
from training.pts import read_pts

FPS = 30.0


def _face() -> np.ndarray:
    return read_pts(next(iter(sorted(LFPW.glob("*.pts")))))


def _frame_to_frame(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=2).mean())


def test_the_first_frame_passes_through_unchanged() -> None:
    face = _face()
    np.testing.assert_array_equal(OneEuroFilter()(face, 0.0), face)


def test_jitter_of_a_still_face_is_cut_by_more_than_half() -> None:
    rng = np.random.default_rng(0)
    face = _face()
    noise = 0.01 * face_scale(face)  # 1 % of the face's size, as the network's points jitter
    raw = np.stack([face + rng.normal(0.0, noise, face.shape) for _ in range(90)])
    smooth = OneEuroFilter()
    smoothed = np.stack([smooth(frame, i / FPS) for i, frame in enumerate(raw)])
    assert _frame_to_frame(smoothed[30:]) < 0.5 * _frame_to_frame(raw[30:])


def test_a_fast_moving_face_is_followed_within_a_few_percent_of_its_size() -> None:
    face = _face()
    scale = face_scale(face)
    smooth = OneEuroFilter()
    # A head turn's speed: the face crosses its own size in half a second.
    lag = []
    for i in range(60):
        moved = face + np.array([2.0 * scale * i / FPS, 0.0])
        lag.append(np.linalg.norm(smooth(moved, i / FPS) - moved, axis=1).mean() / scale)
    assert max(lag[20:]) < 0.05


def test_a_clock_that_does_not_advance_restarts_the_filter() -> None:
    face = _face()
    smooth = OneEuroFilter()
    smooth(face, 1.0)
    np.testing.assert_array_equal(smooth(face + 5.0, 1.0), face + 5.0)
