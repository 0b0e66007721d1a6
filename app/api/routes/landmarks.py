"""POST /landmarks and POST /landmarks/render."""

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from app.api import metrics
from app.api.budget import PixelBudget
from app.api.deps import PixelBudgetDep, PredictorDep, SettingsDep, get_admission
from app.api.errors import ApiError
from app.api.schemas import ErrorResponse, LandmarksResponse
from app.config import Settings
from app.inference import (
    Face,
    FaceDetector,
    InvalidImageError,
    LandmarkPredictor,
    TooManyPixelsError,
    UnsupportedMediaTypeError,
)
from app.inference.imaging import SUPPORTED_FORMATS, decode_image, encode_image, read_image_size
from app.inference.render import draw_faces

router = APIRouter(prefix="/landmarks", tags=["landmarks"])

FIELD = "image"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": f"The photo: {', '.join(SUPPORTED_FORMATS)}.",
                        }
                    },
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "invalid_image: undecodable or truncated file; "
        "invalid_request: malformed multipart body",
    },
    413: {
        "model": ErrorResponse,
        "description": "payload_too_large, or too_many_pixels (the image, or the pixels the detector "
        "would scan at this upsample)",
    },
    415: {"model": ErrorResponse, "description": "unsupported_media_type"},
    422: {"model": ErrorResponse, "description": "validation_error: missing field, bad parameter"},
    503: {
        "model": ErrorResponse,
        "description": "overloaded (the worker's queue is full or the request waited too long in it; "
        "reason queue_full or queue_timeout), shutting_down, or not_ready; all with Retry-After",
    },
}

Upsample = Annotated[
    int | None,
    Query(
        ge=0,
        le=2,
        description="dlib upsampling: 1 finds faces down to ~40 px, at ~4x the cost. "
        "Default: LANDMARKS_DEFAULT_UPSAMPLE (0).",
    ),
]
MaxFaces = Annotated[
    int | None, Query(ge=1, le=1000, description="Return at most this many faces, largest first.")
]


async def read_upload(request: Request, settings: Settings) -> tuple[bytes, str | None]:
    """The bytes and declared content type of the single file in field ``image``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the photo as multipart/form-data in the field '{FIELD}'",
        )
    try:
        form = await request.form(max_files=8, max_fields=32)
    except (StarletteHTTPException, MultiPartException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", str(exc))
        raise ApiError(400, "invalid_request", f"the multipart body is malformed: {detail}") from exc
    values = form.getlist(FIELD)
    if not values:
        raise ApiError(422, "validation_error", f"the form field '{FIELD}' (a file) is required")
    if len(values) > 1:
        raise ApiError(422, "validation_error", f"send exactly one file in the field '{FIELD}'")
    upload = values[0]
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "validation_error", f"the field '{FIELD}' must be a file, not text")
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise ApiError(
            413, "payload_too_large", f"the upload exceeds the limit of {settings.max_upload_bytes} bytes"
        )
    data = await upload.read()
    return data, upload.content_type


def _declares_non_image(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(";")[0].strip().lower()
    return not (kind.startswith("image/") or kind in ("application/octet-stream", ""))


def check_detection_budget(
    image: np.ndarray, detector: FaceDetector, settings: Settings, upsample: int
) -> None:
    """Refuse work the pixel limit alone would let through: a small, highly compressed file of a
    large image with ``upsample=2`` would make dlib scan 16 times its pixels (gigabytes, a minute)."""
    height, width = image.shape[:2]
    scanned = detector.scanned_pixels(width, height, upsample)
    if scanned > settings.max_detect_pixels:
        raise TooManyPixelsError(
            f"with upsample={upsample} the detector would scan {scanned} pixels for this {width}x{height} "
            f"image; the limit is {settings.max_detect_pixels}: send a smaller image or a lower upsample"
        )


def run_pipeline(
    predictor: LandmarkPredictor,
    data: bytes,
    content_type: str | None,
    settings: Settings,
    upsample: int,
    max_faces: int | None,
) -> tuple[np.ndarray, list[Face]]:
    """Decode, detect, regress; each stage timed. Runs in a worker thread."""
    t0 = time.perf_counter()
    try:
        image = decode_image(data, settings.max_pixels)
    except InvalidImageError as exc:
        # The bytes are no image; if the client also said they are something else, say that.
        if _declares_non_image(content_type):
            raise UnsupportedMediaTypeError(
                f"content type {content_type!r} is not an image; send one of {', '.join(SUPPORTED_FORMATS)}"
            ) from exc
        raise
    check_detection_budget(image, predictor.detector, settings, upsample)
    t1 = time.perf_counter()
    detections = predictor.detect(image, upsample)[:max_faces]
    t2 = time.perf_counter()
    points = predictor.landmarks_for_boxes(image, [d.box for d in detections])
    t3 = time.perf_counter()
    metrics.STAGE_LATENCY.labels(stage="decode").observe(t1 - t0)
    metrics.STAGE_LATENCY.labels(stage="detect").observe(t2 - t1)
    metrics.STAGE_LATENCY.labels(stage="regress").observe(t3 - t2)
    metrics.FACES.inc(len(detections))
    metrics.FACES_PER_IMAGE.observe(len(detections))
    return image, [Face(d.box, d.score, p) for d, p in zip(detections, points, strict=True)]


def announced_pixels(data: bytes, max_pixels: int) -> int:
    """Pixels the header announces; 0 for a file that will be refused before decoding anyway."""
    try:
        width, height = read_image_size(data)
    except InvalidImageError:
        return 0
    return width * height if width * height <= max_pixels else 0


@asynccontextmanager
async def _processed(
    request: Request,
    predictor: LandmarkPredictor,
    settings: Settings,
    budget: PixelBudget,
    upsample: int | None,
    max_faces: int | None,
) -> AsyncIterator[tuple[np.ndarray, list[Face]]]:
    """The decoded image and its faces: the upload waits its turn in the worker's admission queue, then
    its pixels are held in the worker's budget until the caller is done."""
    data, content_type = await read_upload(request, settings)
    chosen_upsample = settings.default_upsample if upsample is None else upsample
    async with get_admission(request).slot(receive=request.receive):
        weight = await to_thread.run_sync(announced_pixels, data, settings.max_pixels)
        async with budget.hold(weight):
            yield await to_thread.run_sync(
                run_pipeline, predictor, data, content_type, settings, chosen_upsample, max_faces
            )


@router.post(
    "",
    response_model=LandmarksResponse,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Every face in the photo with its 68 landmarks",
)
async def landmarks(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: Upsample = None,
    max_faces: MaxFaces = None,
) -> Response:
    async with _processed(request, predictor, settings, budget, upsample, max_faces) as (image, faces):
        body = {
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "faces": [face.to_dict() for face in faces],
            "model": {"name": predictor.name, "version": predictor.version},
        }
    # Built by hand: validating thousands of floats through pydantic costs more than the network.
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@router.post(
    "/render",
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "The annotated photo"},
        **ERRORS,
    },
    response_class=Response,
    openapi_extra=UPLOAD_BODY,
    summary="The photo with boxes and landmarks drawn",
)
async def render(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: Upsample = None,
    max_faces: MaxFaces = None,
    format: Annotated[Literal["png", "jpeg"] | None, Query(description="Default: jpeg.")] = None,
) -> Response:
    fmt = format or settings.render_format
    async with _processed(request, predictor, settings, budget, upsample, max_faces) as (image, faces):
        encoded = await to_thread.run_sync(lambda: encode_image(draw_faces(image, faces), fmt))
    return Response(
        encoded,
        media_type=f"image/{fmt}",
        headers={"X-Faces": str(len(faces))},
    )
