"""Augmentation: one random similarity transform of the whole image, expressed as a jittered ``Frame``
that ``crop_frame`` then samples, a horizontal flip with the 68-point permutation, and photometric
changes of the crop."""

import cv2
import numpy as np

from app.inference.geometry import Frame
from app.inference.landmarks import FLIP_PERMUTATION
from training.config import AugmentConfig


def jitter_frame(frame: Frame, rng: np.random.Generator, config: AugmentConfig) -> Frame:
    """The frame moved, scaled and rotated (on top of its own angle) at random: what a noisy detector, a
    tilted head or the error of an earlier stage give."""
    scale = float(np.exp(rng.uniform(-config.scale, config.scale)))
    dx, dy = rng.uniform(-config.shift, config.shift, size=2)
    angle = float(np.deg2rad(rng.uniform(-config.rotation, config.rotation)))
    return Frame(
        cx=frame.cx + dx * frame.width,
        cy=frame.cy + dy * frame.height,
        width=frame.width * scale,
        height=frame.height * scale,
        angle=frame.angle + angle,
    )


def flip_face(
    image: np.ndarray, points: np.ndarray, frame: Frame, axis_x: float
) -> tuple[np.ndarray, np.ndarray, Frame]:
    """Mirror ``image`` (whose central column sits at image x = ``axis_x``), the points and the frame.

    Points and frame stay in the original image's pixel coordinates; the points are re-ordered with
    ``FLIP_PERMUTATION`` so that, say, the left eye's corner is still point 36.
    """
    mirrored = points.copy()
    mirrored[:, 0] = 2.0 * axis_x - mirrored[:, 0]
    flipped_frame = Frame(
        cx=2.0 * axis_x - frame.cx, cy=frame.cy, width=frame.width, height=frame.height, angle=-frame.angle
    )
    return np.ascontiguousarray(image[:, ::-1]), mirrored[FLIP_PERMUTATION], flipped_frame


GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def photometric(crop: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Colour gains, contrast, brightness, sometimes grayscale, sometimes blur; uint8 in and out."""
    out = crop.astype(np.float32)
    out *= rng.uniform(1.0 - config.colour, 1.0 + config.colour, size=3).astype(np.float32)
    mean = out.mean()
    out = (out - mean) * rng.uniform(1.0 - config.contrast, 1.0 + config.contrast) + mean
    out += rng.uniform(-config.brightness, config.brightness) * 255.0
    if rng.random() < config.grayscale:
        out = np.repeat((out @ GRAY_WEIGHTS)[:, :, None], 3, axis=2)
    if rng.random() < config.blur:
        sigma = rng.uniform(0.3, max(0.3, config.blur_sigma))
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def occlude(crop: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Sometimes (``config.occlusion``) paint a rectangle of one random colour, each side 10 % to
    ``config.occlusion_size`` of the crop, centred anywhere in the crop's middle 80 %: a hand, a
    microphone or hair over part of the face. The points stay where they are (random erasing)."""
    if config.occlusion <= 0 or rng.random() >= config.occlusion:  # 0 draws nothing: old runs repeat
        return crop
    side = len(crop)
    low = max(1, round(0.1 * side))
    high = max(low, round(config.occlusion_size * side))
    height, width = rng.integers(low, high + 1, size=2)
    cy, cx = rng.uniform(0.1 * side, 0.9 * side, size=2)
    top, left = int(max(0, cy - height / 2)), int(max(0, cx - width / 2))
    out = crop.copy()
    out[top : top + height, left : left + width] = rng.integers(0, 256, size=3, dtype=np.uint8)
    return out
