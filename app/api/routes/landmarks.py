"""POST /landmarks, POST /landmarks/render and POST /landmarks/align."""

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api import metrics
from app.api.bodies import IMAGE_BODY, ImageUpload, read_image
from app.api.budget import PixelBudget
from app.api.deps import PixelBudgetDep, PredictorDep, SettingsDep, get_admission
from app.api.schemas import AlignResponse, ErrorResponse, LandmarksResponse
from app.config import Settings, UpsamplePolicy
from app.inference import (
    Face,
    FaceDetector,
    InvalidImageError,
    LandmarkPredictor,
    TooManyPixelsError,
    UnsupportedMediaTypeError,
)
from app.inference.align import DEFAULT_SIZE, MAX_SIZE, MIN_SIZE, Border, Template, align_face
from app.inference.imaging import SUPPORTED_FORMATS, decode_image, encode_image, read_image_size
from app.inference.render import draw_faces

router = APIRouter(prefix="/landmarks", tags=["landmarks"])

# Both request bodies, multipart and JSON (the name is the one routes know).
UPLOAD_BODY = IMAGE_BODY
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "invalid_image: undecodable or truncated file, or bad base64; "
        "invalid_request: malformed multipart body",
    },
    413: {
        "model": ErrorResponse,
        "description": "payload_too_large, or too_many_pixels (the image, or the pixels the detector "
        "would scan at this upsample)",
    },
    415: {"model": ErrorResponse, "description": "unsupported_media_type"},
    422: {
        "model": ErrorResponse,
        "description": "validation_error: missing field, malformed JSON, unknown JSON field, bad parameter "
        "(`details` lists each problem)",
    },
    503: {
        "model": ErrorResponse,
        "description": "overloaded (the worker's queue is full or the request waited too long in it; "
        "reason queue_full or queue_timeout), shutting_down, or not_ready; all with Retry-After",
    },
}

Upsample = Annotated[
    UpsamplePolicy | None,
    Query(
        description="Detection policy. 0, 1 or 2: dlib's upsampling; 0 finds faces of ~80 px and more, "
        "1 down to ~40 px at ~4x the detection time, 2 down to ~20 px at ~16x. auto: the highest of "
        "these whose scanned pixels (width x height x 4^upsample) stay within LANDMARKS_AUTO_SCAN_PIXELS "
        "(default 2,000,000: a 500x375 photo gets 1, photos of 0.5 MP and more get 0). The response "
        "says which was used (detection.upsample). Default: LANDMARKS_DEFAULT_UPSAMPLE (auto).",
    ),
]
MaxFaces = Annotated[
    int | None, Query(ge=1, le=1000, description="Return at most this many faces, largest first.")
]


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


def decode_upload(
    data: bytes, content_type: str | None, detector: FaceDetector, settings: Settings, policy: UpsamplePolicy
) -> tuple[np.ndarray, int]:
    """The upright image and the upsampling ``policy`` resolves to for it; refused if it is no image or
    over the pixel or detection limits."""
    try:
        image = decode_image(data, settings.max_pixels)
    except InvalidImageError as exc:
        # The bytes are no image; if the client also said they are something else, say that.
        if _declares_non_image(content_type):
            raise UnsupportedMediaTypeError(
                f"content type {content_type!r} is not an image; send one of {', '.join(SUPPORTED_FORMATS)}"
            ) from exc
        raise
    upsample = detector.resolve_upsample(image.shape[1], image.shape[0], policy)
    check_detection_budget(image, detector, settings, upsample)
    return image, upsample


def record_detection(count: int, upsample: int) -> None:
    """Metrics of one image's detection: the upsampling it ran at and the faces it found."""
    metrics.DETECTIONS_BY_UPSAMPLE.labels(upsample=str(upsample)).inc()
    metrics.FACES.inc(count)
    metrics.FACES_PER_IMAGE.observe(count)


def run_pipeline(
    predictor: LandmarkPredictor,
    data: bytes,
    content_type: str | None,
    settings: Settings,
    policy: UpsamplePolicy,
    max_faces: int | None,
) -> tuple[np.ndarray, list[Face], int]:
    """Decode, detect, regress; each stage timed. Runs in a worker thread. Returns the image, its faces
    and the upsampling the detection ran at (``policy`` resolved for this image)."""
    t0 = time.perf_counter()
    image, upsample = decode_upload(data, content_type, predictor.detector, settings, policy)
    t1 = time.perf_counter()
    detections = predictor.detect(image, upsample)[:max_faces]
    t2 = time.perf_counter()
    faces = predictor.faces(image, detections)
    t3 = time.perf_counter()
    metrics.STAGE_LATENCY.labels(stage="decode").observe(t1 - t0)
    metrics.STAGE_LATENCY.labels(stage="detect").observe(t2 - t1)
    metrics.STAGE_LATENCY.labels(stage="regress").observe(t3 - t2)
    record_detection(len(detections), upsample)
    return image, faces, upsample


def photo_result(image: np.ndarray, faces: list[dict[str, Any]], upsample: int) -> dict[str, Any]:
    """The size, detection and faces (as JSON) of one photo, as every answer gives them."""
    return {
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "detection": {"upsample": upsample},
        "faces": faces,
    }


def model_ref(predictor: LandmarkPredictor) -> dict[str, str]:
    return {"name": predictor.name, "version": predictor.version}


def announced_pixels(data: bytes, max_pixels: int) -> int:
    """Pixels the header announces; 0 for a file that will be refused before decoding anyway."""
    try:
        width, height = read_image_size(data)
    except InvalidImageError:
        return 0
    return width * height if width * height <= max_pixels else 0


def read_and_weigh(upload: ImageUpload, max_pixels: int) -> tuple[bytes, int]:
    """The upload's bytes (base64 decoded here, off the event loop) and its pixels for the budget."""
    data = upload.read()
    return data, announced_pixels(data, max_pixels)


def json_response(body: dict[str, Any]) -> Response:
    """Built by hand: validating thousands of floats through pydantic costs more than the network."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@asynccontextmanager
async def _processed(
    request: Request,
    predictor: LandmarkPredictor,
    settings: Settings,
    budget: PixelBudget,
    upsample: UpsamplePolicy | None,
    max_faces: int | None,
) -> AsyncIterator[tuple[np.ndarray, list[Face], int]]:
    """The decoded image, its faces and the upsampling used: the upload waits its turn in the worker's
    admission queue, then its pixels are held in the worker's budget until the caller is done."""
    upload = await read_image(request, settings)
    policy = settings.default_upsample if upsample is None else upsample
    async with get_admission(request).slot(receive=request.receive):
        data, weight = await to_thread.run_sync(read_and_weigh, upload, settings.max_pixels)
        async with budget.hold(weight):
            yield await to_thread.run_sync(
                run_pipeline, predictor, data, upload.content_type, settings, policy, max_faces
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
    processed = _processed(request, predictor, settings, budget, upsample, max_faces)
    async with processed as (image, faces, used_upsample):
        body = photo_result(image, [face.to_dict() for face in faces], used_upsample)
    return json_response({**body, "model": model_ref(predictor)})


@router.post(
    "/render",
    responses={
        200: {
            "content": {"image/png": {}, "image/jpeg": {}},
            "description": "The annotated photo; headers X-Faces (faces drawn) and X-Detection-Upsample "
            "(the upsampling the detection ran at)",
        },
        **ERRORS,
    },
    response_class=Response,
    openapi_extra=UPLOAD_BODY,
    summary="The photo with boxes, landmarks and head-pose axes drawn",
)
async def render(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: Upsample = None,
    max_faces: MaxFaces = None,
    format: Annotated[Literal["png", "jpeg"] | None, Query(description="Default: jpeg.")] = None,
    pose: Annotated[
        bool,
        Query(
            description="Draw each face's head-pose axes from the nose tip: x red (the viewer's right "
            "in a frontal face), y green (down the face), z blue (out of the face)."
        ),
    ] = True,
) -> Response:
    fmt = format or settings.render_format
    processed = _processed(request, predictor, settings, budget, upsample, max_faces)
    async with processed as (image, faces, used_upsample):
        encoded = await to_thread.run_sync(lambda: encode_image(draw_faces(image, faces, pose), fmt))
    return Response(
        encoded,
        media_type=f"image/{fmt}",
        headers={"X-Faces": str(len(faces)), "X-Detection-Upsample": str(used_upsample)},
    )


def aligned_faces(
    image: np.ndarray, faces: list[Face], size: int, template: Template, border: Border
) -> list[dict[str, Any]]:
    """Each face's JSON with its chip (base64 PNG) and the image -> chip transform."""
    out = []
    for face in faces:
        aligned = align_face(image, face.landmarks, size, template, border)
        out.append(
            {
                **face.to_dict(),
                "transform": np.round(aligned.transform, 6).tolist(),
                "chip": base64.b64encode(encode_image(aligned.chip, "png")).decode("ascii"),
            }
        )
    return out


@router.post(
    "/align",
    response_model=AlignResponse,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Every face with its landmarks, pose and an aligned face chip",
)
async def align(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: Upsample = None,
    max_faces: MaxFaces = None,
    size: Annotated[
        int, Query(ge=MIN_SIZE, le=MAX_SIZE, description="Side of the square chips in pixels.")
    ] = DEFAULT_SIZE,
    template: Annotated[
        Template,
        Query(
            description="arcface: InsightFace's five-point 112x112 template scaled to size; "
            "dlib: dlib's get_face_chip (its centred 51-point template, padding 0.25)."
        ),
    ] = "arcface",
    border: Annotated[
        Border,
        Query(
            description="Fill of chip pixels past the photo's border: black (zeros, as dlib and "
            "InsightFace), replicate (nearest edge pixel), reflect (mirrored at the edge)."
        ),
    ] = "black",
) -> Response:
    processed = _processed(request, predictor, settings, budget, upsample, max_faces)
    async with processed as (image, faces, used_upsample):
        chips = await to_thread.run_sync(aligned_faces, image, faces, size, template, border)
        body = photo_result(image, chips, used_upsample)
    extra = {"size": size, "template": template, "border": border, "model": model_ref(predictor)}
    return json_response({**body, **extra})
