"""dlib's HOG frontal face detector behind a small, thread-safe interface.

dlib types never leave this module: callers get :class:`Box` and :class:`Detection`.
One dlib detector object must never run in two threads at once (it segfaults), so calls are
serialised with a lock; dlib holds the GIL anyway, so parallelism comes from processes.
"""

import threading
from dataclasses import dataclass
from typing import Literal

import cv2
import dlib
import numpy as np

MAX_UPSAMPLE = 2
AUTO = "auto"
# What a caller asks the detector for: an upsampling *level* (0 to MAX_UPSAMPLE, the int a detection
# runs at), or AUTO, the highest level within the scan budget, which ``resolve_upsample`` turns into
# the level for one image. (The service's ``upsample`` query and LANDMARKS_DEFAULT_UPSAMPLE carry a policy;
# app.config.UpsamplePolicy is this type with its bounds checked.)
UpsamplePolicy = int | Literal["auto"]
# Default scan budget of AUTO, in pixels (measured and justified in docs/PERFORMANCE.md): the 500x375
# photos people send get upsample 1 (750,000 pixels scanned), thumbnails up to 125,000 pixels get 2, and
# photos of 500,000 pixels and more (every phone or camera photo) stay at 0, as cheap as before.
DEFAULT_AUTO_SCAN_PIXELS = 2_000_000


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
    longer side is at most that many pixels and maps the boxes back; ``auto_scan_pixels`` is the budget
    of ``upsample="auto"`` (see :meth:`resolve_upsample`).
    """

    def __init__(
        self, *, on_gray: bool = True, max_side: int = 0, auto_scan_pixels: int = DEFAULT_AUTO_SCAN_PIXELS
    ) -> None:
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()
        self.on_gray = on_gray
        self.max_side = max_side
        self.auto_scan_pixels = auto_scan_pixels

    def _detection_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the copy dlib sees: the image, or its ``max_side`` reduction."""
        if self.max_side and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            return max(1, round(width * scale)), max(1, round(height * scale))
        return width, height

    def scanned_pixels(self, width: int, height: int, level: int) -> int:
        """Pixels the HOG detector scans at its finest pyramid level: each upsampling step doubles both
        sides of the copy it sees, so time and memory grow as 4^upsample."""
        detect_width, detect_height = self._detection_size(width, height)
        return detect_width * detect_height * 4**level

    def resolve_upsample(self, width: int, height: int, policy: UpsamplePolicy) -> int:
        """The upsampling level a detection of a ``width`` x ``height`` image runs at: ``policy`` itself,
        or for ``"auto"`` the highest level whose scanned pixels stay within ``auto_scan_pixels`` (0 when
        even level 0 exceeds it: auto never costs more than level 0 on a large photo)."""
        if policy == AUTO:
            return max(
                (
                    level
                    for level in range(MAX_UPSAMPLE + 1)
                    if self.scanned_pixels(width, height, level) <= self.auto_scan_pixels
                ),
                default=0,
            )
        if not isinstance(policy, int) or not 0 <= policy <= MAX_UPSAMPLE:
            raise ValueError(f"upsample must be {AUTO!r} or between 0 and {MAX_UPSAMPLE}, got {policy!r}")
        return policy

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

    def detect(self, image: np.ndarray, policy: UpsamplePolicy = 0) -> list[Detection]:
        """Faces in an RGB (or grayscale) ``uint8`` image, largest first. ``policy="auto"`` runs at
        :meth:`resolve_upsample`'s level; callers that report the level resolve it first."""
        level = self.resolve_upsample(image.shape[1], image.shape[0], policy)
        prepared, back = self._prepare(image)
        with self._lock:
            rects, scores, _ = self._detector.run(prepared, level, 0.0)
        detections = []
        for rect, score in zip(rects, scores, strict=True):
            box = Box(rect.left(), rect.top(), rect.right(), rect.bottom())
            if back != 1.0:
                box = box.scaled(back)
            detections.append(Detection(box=box, score=float(score)))
        detections.sort(key=lambda d: d.box.area, reverse=True)
        return detections
