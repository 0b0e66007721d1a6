"""dlib's HOG frontal face detector behind a small, thread-safe interface.

dlib types never leave this module: callers get :class:`Box` and :class:`Detection`.
One dlib detector object must never run in two threads at once (it segfaults), so calls are
serialised with a lock; dlib holds the GIL anyway, so parallelism comes from processes.
"""

import threading
from dataclasses import dataclass

import cv2
import dlib
import numpy as np

MAX_UPSAMPLE = 2


@dataclass(frozen=True)
class Box:
    """A dlib rectangle in original-image pixels; ``right``/``bottom`` are inclusive as in dlib."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    @property
    def area(self) -> int:
        return self.width * self.height

    def contains(self, x: float, y: float) -> bool:
        return self.left <= x <= self.right and self.top <= y <= self.bottom

    def scaled(self, factor: float) -> "Box":
        """The box in an image scaled by ``factor`` (used when detecting on a resized copy)."""
        return Box(
            left=round(self.left * factor),
            top=round(self.top * factor),
            right=round((self.right + 1) * factor) - 1,
            bottom=round((self.bottom + 1) * factor) - 1,
        )


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float


class FaceDetector:
    """dlib's HOG + linear SVM frontal face detector.

    ``on_gray`` runs detection on a grayscale copy; ``max_side`` (0 = off) detects on a copy whose
    longer side is at most that many pixels and maps the boxes back.
    """

    def __init__(self, *, on_gray: bool = True, max_side: int = 0) -> None:
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()
        self.on_gray = on_gray
        self.max_side = max_side

    def _detection_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the copy dlib sees: the image, or its ``max_side`` reduction."""
        if self.max_side and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            return max(1, round(width * scale)), max(1, round(height * scale))
        return width, height

    def scanned_pixels(self, width: int, height: int, upsample: int) -> int:
        """Pixels the HOG detector scans at its finest pyramid level: each upsampling step doubles both
        sides of the copy it sees, so time and memory grow as 4^upsample."""
        detect_width, detect_height = self._detection_size(width, height)
        return detect_width * detect_height * 4**upsample

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The array dlib sees and the factor that maps its boxes back to ``image``."""
        height, width = image.shape[:2]
        size = self._detection_size(width, height)
        scale = 1.0
        if size != (width, height):
            scale = self.max_side / max(width, height)
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if self.on_gray and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return np.ascontiguousarray(image), 1.0 / scale

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        """Faces in an RGB (or grayscale) ``uint8`` image, largest first."""
        if not 0 <= upsample <= MAX_UPSAMPLE:
            raise ValueError(f"upsample must be between 0 and {MAX_UPSAMPLE}, got {upsample}")
        prepared, back = self._prepare(image)
        with self._lock:
            rects, scores, _ = self._detector.run(prepared, upsample, 0.0)
        detections = []
        for rect, score in zip(rects, scores, strict=True):
            box = Box(rect.left(), rect.top(), rect.right(), rect.bottom())
            if back != 1.0:
                box = box.scaled(back)
            detections.append(Detection(box=box, score=float(score)))
        detections.sort(key=lambda d: d.box.area, reverse=True)
        return detections
