"""``app.main:app`` with faults injected, for ``uvicorn tests.robustness.faulty_app:app``.

A real failure inside dlib or the network runtime on some strange image cannot be produced on demand,
so images of particular widths trigger one: the detector raises, the network is fed a tensor it cannot
take (a real runtime error from inside the network), or detection is slow (to fill the in-flight
slots). Every other image takes the real path unchanged.
"""

import time
from collections.abc import Sequence

import numpy as np

from app.inference.detector import Box, Detection, FaceDetector
from app.inference.predictor import LandmarkPredictor
from tests.robustness.fault_widths import (
    RAISE_IN_DETECTION_WIDTH,
    RAISE_IN_NETWORK_WIDTH,
    SLOW_SECONDS,
    SLOW_WIDTH,
)

_real_detect = FaceDetector.detect
_real_estimate = LandmarkPredictor.estimate


def _detect(self: FaceDetector, image: np.ndarray, upsample: int = 0) -> list[Detection]:
    width = image.shape[1]
    if width == RAISE_IN_DETECTION_WIDTH:
        raise RuntimeError("injected fault inside face detection")
    if width == SLOW_WIDTH:
        time.sleep(SLOW_SECONDS)
    if width == RAISE_IN_NETWORK_WIDTH:  # make sure the network runs: one box over the whole image
        return [Detection(Box(0, 0, image.shape[1] - 1, image.shape[0] - 1), 1.0)]
    return _real_detect(self, image, upsample)


def _estimate(
    self: LandmarkPredictor,
    images: Sequence[np.ndarray],
    boxes: Sequence[list[Box]],
    scores: Sequence[Sequence[float]] | None = None,
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    if any(image.shape[1] == RAISE_IN_NETWORK_WIDTH for image in images):
        # A crop far smaller than the network's input: the runtime itself raises from inside the network.
        self.stages[0].network(np.zeros((1, 3, 4, 4), np.float32))
    return _real_estimate(self, images, boxes, scores)


FaceDetector.detect = _detect  # type: ignore[method-assign]
LandmarkPredictor.estimate = _estimate  # type: ignore[method-assign]

from app.main import app  # noqa: E402  (after the patches, which are what this module is for)

__all__ = ["app"]
