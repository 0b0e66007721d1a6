"""bench.video's pure helpers: the labelled moving sequences keep their points exact, and the near-still,
jitter and id-switch definitions say what the docs say on hand-made tracks."""

import cv2
import numpy as np
import pytest

from app.inference.video import VideoLimits, VideoReader
from bench.common import DATA
from bench.video import (
    CANVAS,
    Jitter,
    Roughness,
    id_switches,
    interocular,
    random_motion,
    render,
    still_frames,
    transform_points,
    write_sequence,
)
from training.pts import read_pts

PHOTO = DATA / "300w" / "helen_test" / "helen_296814969_3.jpg"


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return read_pts(PHOTO.with_suffix(".pts"))


def blob_centre(image: np.ndarray, x: float, y: float, radius: int) -> np.ndarray:
    """Intensity-weighted centre of the bright blob near (x, y) on a black background."""
    left, top = round(x) - radius, round(y) - radius
    patch = image[top : top + 2 * radius + 1, left : left + 2 * radius + 1].astype(np.float64)
    ys, xs = np.mgrid[top : top + patch.shape[0], left : left + patch.shape[1]]
    return np.array([(patch * xs).sum(), (patch * ys).sum()]) / patch.sum()


def test_rendered_points_land_where_the_transform_puts_them(face):
    # Bright Gaussian dots at some of the face's points, on black: after the warp each dot's centre must
    # be where transform_points sends its point (a half-pixel convention error would miss by ~0.5 px).
    height, width = np.ceil(face.max(axis=0) + 20).astype(int)[::-1]
    ys, xs = np.mgrid[0:height, 0:width]
    marked = face[[0, 8, 16, 30, 36, 45, 48, 54]]
    image = np.zeros((height, width), np.float64)
    for x, y in marked:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.0**2))
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    for matrix in random_motion(np.random.default_rng(3), face, 8)[::3]:
        # The dots alone: the canvas's grey border rendered from a black picture, taken away.
        blank = render(np.zeros((height, width, 3), np.uint8), matrix)[:, :, 0].astype(np.int16)
        warped = render(np.dstack([image] * 3), matrix)[:, :, 0] - blank
        radius = int(np.ceil(6 * 2.0 * np.sqrt(abs(np.linalg.det(matrix[:, :2])))))
        for point in transform_points(matrix, marked):
            assert np.linalg.norm(blob_centre(warped, *point, radius) - point) < 0.1


def test_motion_is_seeded_smooth_and_keeps_the_face_in_view(face):
    first = random_motion(np.random.default_rng(7), face, 90)
    assert np.array_equal(first, random_motion(np.random.default_rng(7), face, 90))
    for seed in range(20):
        matrices = random_motion(np.random.default_rng(seed), face, 90)
        points = np.stack([transform_points(m, face) for m in matrices])
        assert points.min() >= 0 and (points.max(axis=(0, 1)) < CANVAS).all()
        sizes = np.array([interocular(p) for p in points])
        steps = np.linalg.norm(np.diff(points, axis=0), axis=2).mean(axis=1) / sizes[1:]
        assert steps.max() < 0.25  # a face never jumps more than a quarter eye distance in one frame


def test_a_written_sequence_decodes_to_its_frames(tmp_path, face):
    sequence = write_sequence(tmp_path, PHOTO, np.random.default_rng(0), frames=6)
    matrices = random_motion(np.random.default_rng(0), face, 6)
    assert np.allclose(sequence.truth, [transform_points(m, face) for m in matrices])
    original = cv2.imread(str(PHOTO))
    with VideoReader(sequence.path, VideoLimits(max_pixels=10**7, max_frames=100)) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps) == (*CANVAS, 30.0)
        decoded = [frame for _, _, frame in reader.frames()]
    assert len(decoded) == 6
    for frame, matrix in zip(decoded, matrices, strict=True):
        assert cv2.PSNR(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), render(original, matrix)) > 35


def still_track(face: np.ndarray, frames: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return face + rng.normal(0.0, noise * interocular(face), size=(frames, *face.shape))


def test_near_still_frames_are_those_whose_window_does_not_move(face):
    track = still_track(face, 40, noise=0.0005)
    still = still_frames(track, window=3)
    assert not still[:3].any() and not still[-3:].any()  # the window must fit in the track
    assert still[3:-3].all()
    moved = track.copy()
    moved[20:] += [0.05 * interocular(face), 0.0]  # a step of 5 % of the eye distance at frame 20
    assert np.flatnonzero(~still_frames(moved, window=3)[3:-3]).tolist() == [x - 3 for x in range(17, 23)]


def test_a_roll_or_a_zoom_is_not_still_but_a_talking_mouth_is(face):
    track = still_track(face, 30, noise=0.0)
    centre = face.mean(axis=0)
    turned = track.copy()
    angle = np.radians(3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned[15:] = (face - centre) @ rotation.T + centre
    assert not still_frames(turned, window=2)[13:17].any()
    zoomed = track.copy()
    zoomed[15:] = (face - centre) * 1.05 + centre
    assert not still_frames(zoomed, window=2)[13:17].any()
    talking = track.copy()
    # The jaw and the lower lip drop by a fifth of the eye distance every other frame.
    talking[::2, [*range(5, 12), *range(55, 60), *range(64, 68)], 1] += 0.2 * interocular(face)
    assert still_frames(talking, window=2)[2:-2].all()


def test_jitter_compares_raw_and_smoothed_on_still_pairs_only(face):
    raw = still_track(face, 20, noise=0.01)
    smoothed = np.repeat(face[None], 20, axis=0)
    still = np.ones(20, dtype=bool)
    still[10] = False  # pairs (9, 10) and (10, 11) drop out
    jitter = Jitter()
    jitter.add(raw, smoothed, still)
    assert jitter.pairs == 17
    assert jitter.smoothed == 0.0 and jitter.ratio == 0.0
    # Gaussian noise of 1 % per axis: mean distance between two draws ~ sqrt(pi) % of the eye distance.
    assert 1.4 < jitter.raw / jitter.pairs < 2.1


def test_id_switches_are_new_tracks_where_one_just_ended(face):
    size = interocular(face)

    def track(first: int, last: int, shift: float = 0.0) -> dict[int, np.ndarray]:
        return {i: face + [shift * size, 0.0] for i in range(first, last + 1)}

    assert id_switches({1: track(0, 99)}, max_gap=15) == 0
    assert id_switches({1: track(0, 40), 2: track(43, 99, shift=0.3)}, max_gap=15) == 1
    assert id_switches({1: track(0, 40), 2: track(60, 99)}, max_gap=15) == 0  # too late: a new arrival
    assert id_switches({1: track(0, 40), 2: track(42, 99, shift=3.0)}, max_gap=15) == 0  # elsewhere
    assert id_switches({1: track(0, 99), 2: track(10, 99, shift=3.0)}, max_gap=15) == 0  # two faces
    # One face lost twice: two switches; the new track counts once even if two tracks ended near it.
    assert id_switches({1: track(0, 30), 2: track(31, 60), 3: track(62, 99)}, max_gap=15) == 2


def test_roughness_ignores_steady_motion_and_sees_noise(face):
    steady = np.stack([face + [2.0 * t, -1.0 * t] for t in range(30)])  # constant speed
    noisy = still_track(face, 30, noise=0.01) + (steady - face)
    roughness = Roughness()
    roughness.add(noisy, steady)
    assert roughness.frames == 28
    assert roughness.smoothed < 1e-9 and roughness.raw > 0.01 * roughness.frames
