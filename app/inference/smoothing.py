"""Temporal smoothing of a face's points over the frames of a stream: the One-Euro filter.

A first-order low-pass filter whose cut-off frequency rises with the speed of the signal (Casiez,
Roussel and Vogel, "1 Euro Filter", CHI 2012): on a still face the cut-off stays at ``min_cutoff`` and
the jitter of the network's points is filtered away; on a moving face it rises by ``beta`` per unit of
speed, so the points follow without visible lag.

Speeds are measured in face sizes per second (the RMS radius of the 51 inner points), not in pixels,
so the same parameters serve a face of 60 and of 600 pixels. Each point has its own cut-off from its
own speed, but never below the one the whole face's motion asks for: a turning head moves every point
at once, while a talking mouth moves only its own. Speeds under ``noise_speed`` count as none: the
network's jitter itself reads as a small speed (more so at low frame rates, where each frame's noise is
spread over a longer step), and without this floor it would raise the cut-off of a still face.
"""

import math
from dataclasses import dataclass

import numpy as np

# Defaults measured on the shared clips and on moving HELEN sequences (bench/video.py): they halve the
# jitter of still faces or better while the tracked error on moving faces stays within 0.2 points of
# the photo path's. Against 1 Hz / 10 on 15 moving sequences: smoothed minus photo-path NME +0.14
# instead of +0.18 points; near-still jitter ratios within 0.01 (multi_face 0.32, head_turns 0.33).
# The noise floor of 0.2 face sizes per second, measured with bench.video's jitter and accuracy code on
# the three clips with near-still stretches and 12 moving sequences: jitter ratios 0.41 on backlit.wmv
# (15 fps; 0.57 without a floor), 0.21 on head_turns.avi and multi_face.avi (0.33, 0.35), for +0.01
# points of tracked error.
MIN_CUTOFF_HZ = 0.5
BETA = 15.0
DERIVATIVE_CUTOFF_HZ = 2.0
NOISE_SPEED = 0.2


def face_scale(points: np.ndarray) -> float:
    """The RMS radius of the inner points (17-67) around their centroid, in pixels: a face's size that
    barely depends on its pose or expression."""
    inner = np.asarray(points, dtype=np.float64)[17:]
    return float(max(np.sqrt(((inner - inner.mean(axis=0)) ** 2).sum(axis=1).mean()), 1e-6))


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """The smoothing factor of an exponential filter with this cut-off (Hz) at this time step (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuroFilter:
    """The One-Euro filter over one face's (P, 2) points; call it once per frame with the frame's time."""

    min_cutoff: float = MIN_CUTOFF_HZ
    beta: float = BETA
    derivative_cutoff: float = DERIVATIVE_CUTOFF_HZ
    noise_speed: float = NOISE_SPEED  # face sizes per second
    _value: np.ndarray | None = None
    _speed: np.ndarray | None = None  # filtered derivative, pixels per second, (P, 2)
    _time: float | None = None

    def reset(self) -> None:
        self._value = self._speed = self._time = None

    def __call__(self, points: np.ndarray, time: float) -> np.ndarray:
        """The filtered points of the frame at ``time`` (seconds, increasing)."""
        points = np.asarray(points, dtype=np.float64)
        if self._value is None or self._time is None or time <= self._time:
            # The first frame, or a clock that did not advance: nothing to filter against.
            self._value, self._speed, self._time = points.copy(), np.zeros_like(points), time
            return points.copy()
        dt = time - self._time
        raw_speed = (points - self._value) / dt
        assert self._speed is not None
        self._speed = self._speed + _alpha(self.derivative_cutoff, dt) * (raw_speed - self._speed)
        scale = face_scale(points)
        point_speed = np.linalg.norm(self._speed, axis=1) / scale  # face sizes per second, (P,)
        face_speed = np.linalg.norm(self._speed.mean(axis=0)) / scale
        speed = np.maximum(np.maximum(point_speed, face_speed) - self.noise_speed, 0.0)
        cutoff = self.min_cutoff + self.beta * speed
        alpha = np.asarray(_alpha(cutoff, dt))[:, None]
        self._value = self._value + alpha * (points - self._value)
        self._time = time
        return self._value.copy()
