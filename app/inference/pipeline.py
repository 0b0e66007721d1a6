"""Photos in, faces out: the one path of every photo the service, the batch route and the CLI handle.

``PhotoPipeline.run`` takes the bytes of one or more photos and gives back, in order, a :class:`Photo`
(the decoded image, the detector level it ran at, its faces) or the :class:`InferenceError` that
refused it. A single photo is a batch of one (``PhotoPipeline.photo``). The faces of all photos of a
call go through the networks together, ``max_faces`` is applied here and nowhere else, and the time
of each stage is reported the same way for one photo and for many (:attr:`Batch.stage_seconds`).

Two things called "upsample" are kept apart: a *policy* (the detector's ``UpsamplePolicy``: ``"auto"`` or a
level; what the ``upsample`` query parameter, the ``--upsample`` option and the default_upsample
setting carry) and a *level* (an ``int``: the upsampling the detector runs at, a policy resolved for
one image, answered as ``detection.upsample``).

Plain Python and numpy: no web framework. JSON comes from :meth:`Photo.to_dict` and
``Face.to_dict`` (app/api/schemas.py documents it, and a test holds the two together).
"""

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.inference.align import Border, Template, align_face
from app.inference.detector import Detection, UpsamplePolicy
from app.inference.errors import (
    InferenceError,
    InvalidImageError,
    TooManyPixelsError,
    UnsupportedMediaTypeError,
)
from app.inference.imaging import SUPPORTED_FORMATS, decode_image, encode_image
from app.inference.predictor import Face, LandmarkPredictor
from app.inference.render import draw_faces

# Stage names of the ``landmarks_stage_duration_seconds`` metric.
DECODE, DETECT, REGRESS = "decode", "detect", "regress"


@dataclass(frozen=True)
class Upload:
    """One photo's bytes, with the media type the client declared for them (if any)."""

    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class Photo:
    """One decoded photo and what was found in it."""

    image: np.ndarray  # upright RGB (or grayscale) uint8
    level: int  # the detector's upsampling level for this photo (its policy resolved)
    faces: list[Face]  # largest first

    def to_dict(self, faces: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The size, detection and faces of the photo, as every answer gives them; ``faces`` replaces
        the faces' own JSON (``Face.to_dict``) with richer objects (the aligned chips)."""
        return {
            "image": {"width": int(self.image.shape[1]), "height": int(self.image.shape[0])},
            "detection": {"upsample": self.level},
            "faces": [face.to_dict() for face in self.faces] if faces is None else faces,
        }

    def aligned_faces(self, size: int, template: Template, border: Border) -> list[dict[str, Any]]:
        """Each face's JSON with its chip (base64 PNG) and the image -> chip transform."""
        out = []
        for face in self.faces:
            aligned = align_face(self.image, face.landmarks, size, template, border)
            out.append(
                {
                    **face.to_dict(),
                    "transform": np.round(aligned.transform, 6).tolist(),
                    "chip": base64.b64encode(encode_image(aligned.chip, "png")).decode("ascii"),
                }
            )
        return out

    def rendered(self, format: str, pose: bool = True) -> bytes:
        """The photo with its boxes, landmarks (and head-pose axes) drawn, encoded as ``format``."""
        return encode_image(draw_faces(self.image, self.faces, pose), format)


@dataclass
class Batch:
    """What ``PhotoPipeline.run`` found: per photo, in order, its :class:`Photo` or the error that
    refused it; and the seconds each stage took, as ``(stage, seconds)`` observations (one decode and
    one detection per decoded photo, one regression for all of them)."""

    results: list[Photo | InferenceError]
    stage_seconds: list[tuple[str, float]] = field(default_factory=list)

    @property
    def photos(self) -> list[Photo]:
        return [result for result in self.results if isinstance(result, Photo)]

    def single(self) -> Photo:
        """The photo of a batch of one; its error is raised."""
        (result,) = self.results
        if isinstance(result, InferenceError):
            raise result
        return result


def _declares_non_image(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(";")[0].strip().lower()
    return not (kind.startswith("image/") or kind in ("application/octet-stream", ""))


class PhotoPipeline:
    """Decode (within ``max_pixels``), detect (within ``max_detect_pixels`` scanned), regress.

    Thread-safe as the predictor is: routes call it from worker threads.
    """

    def __init__(self, predictor: LandmarkPredictor, *, max_pixels: int, max_detect_pixels: int) -> None:
        self.predictor = predictor
        self.max_pixels = max_pixels
        self.max_detect_pixels = max_detect_pixels

    def model_ref(self) -> dict[str, str]:
        """The ``model`` object of every answer."""
        return {"name": self.predictor.name, "version": self.predictor.version}

    def decode(self, upload: Upload, policy: UpsamplePolicy) -> tuple[np.ndarray, int]:
        """The upright image and the level ``policy`` resolves to for it; refused if it is no image or
        over the pixel or detection limits."""
        try:
            image = decode_image(upload.data, self.max_pixels)
        except InvalidImageError as exc:
            # The bytes are no image; if the client also said they are something else, say that.
            if _declares_non_image(upload.content_type):
                raise UnsupportedMediaTypeError(
                    f"content type {upload.content_type!r} is not an image; send one of "
                    f"{', '.join(SUPPORTED_FORMATS)}"
                ) from exc
            raise
        return image, self.detection_level(image.shape[1], image.shape[0], policy)

    def detection_level(self, width: int, height: int, policy: UpsamplePolicy) -> int:
        """The level ``policy`` resolves to for a ``width`` x ``height`` picture; TooManyPixelsError if
        the detector would scan more than ``max_detect_pixels`` there. This refuses work the pixel limit
        alone would let through: a small, highly compressed file of a large image with upsample=2 would
        make dlib scan 16 times its pixels (gigabytes, a minute)."""
        detector = self.predictor.detector
        level = detector.resolve_upsample(width, height, policy)
        scanned = detector.scanned_pixels(width, height, level)
        if scanned > self.max_detect_pixels:
            raise TooManyPixelsError(
                f"with upsample={level} the detector would scan {scanned} pixels for this {width}x{height} "
                f"image; the limit is {self.max_detect_pixels}: send a smaller image or a lower upsample"
            )
        return level

    def run(self, uploads: Sequence[Upload], policy: UpsamplePolicy, max_faces: int | None = None) -> Batch:
        """Each upload decoded and its faces detected (at most ``max_faces``, largest first), then the
        faces of all of them through the networks at once."""
        seconds: list[tuple[str, float]] = []
        refused: dict[int, InferenceError] = {}
        decoded: dict[int, tuple[np.ndarray, int, list[Detection]]] = {}
        for index, upload in enumerate(uploads):
            started = time.perf_counter()
            try:
                image, level = self.decode(upload, policy)
            except InferenceError as exc:
                refused[index] = exc
                continue
            detected = time.perf_counter()
            decoded[index] = (image, level, self.predictor.detect(image, level)[:max_faces])
            seconds += [(DECODE, detected - started), (DETECT, time.perf_counter() - detected)]
        found: dict[int, Photo] = {}
        if decoded:
            started = time.perf_counter()
            faces = self.predictor.faces([d[0] for d in decoded.values()], [d[2] for d in decoded.values()])
            seconds.append((REGRESS, time.perf_counter() - started))
            found = {
                index: Photo(image, level, its_faces)
                for (index, (image, level, _)), its_faces in zip(decoded.items(), faces, strict=True)
            }
        return Batch([found.get(index) or refused[index] for index in range(len(uploads))], seconds)
