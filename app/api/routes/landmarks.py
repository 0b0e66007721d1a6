"""POST /landmarks, POST /landmarks/render and POST /landmarks/align: HTTP in and out of the photo
pipeline (``app.inference.pipeline``), a photo being a batch of one."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api import metrics
from app.api.bodies import IMAGE_BODY, ImageUpload, read_image
from app.api.budget import PixelBudget, announced_pixels
from app.api.deps import PipelineDep, PixelBudgetDep, SettingsDep, get_admission
from app.api.schemas import AlignResponse, ErrorResponse, LandmarksResponse
from app.config import Settings, UpsamplePolicy
from app.inference.align import DEFAULT_SIZE, MAX_SIZE, MIN_SIZE, Border, Template
from app.inference.pipeline import Batch, Photo, PhotoPipeline, Upload

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

UpsampleQuery = Annotated[
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


def read_and_weigh(upload: ImageUpload, max_pixels: int) -> tuple[Upload, int]:
    """The upload's bytes (base64 decoded here, off the event loop) and its pixels for the budget."""
    data = upload.read()
    return Upload(data, upload.content_type), announced_pixels(data, max_pixels)


def run_photos(
    pipeline: PhotoPipeline, uploads: list[Upload], policy: UpsamplePolicy, max_faces: int | None
) -> Batch:
    """``pipeline.run`` with its metrics recorded (in a worker thread)."""
    batch = pipeline.run(uploads, policy, max_faces)
    metrics.record_photos(batch)
    return batch


def json_response(body: dict[str, Any]) -> Response:
    """Built by hand: validating thousands of floats through pydantic costs more than the network."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@asynccontextmanager
async def _processed(
    request: Request,
    pipeline: PhotoPipeline,
    settings: Settings,
    budget: PixelBudget,
    upsample: UpsamplePolicy | None,
    max_faces: int | None,
) -> AsyncIterator[Photo]:
    """The photo and its faces: the upload waits its turn in the worker's admission queue, then its
    pixels are held in the worker's budget until the caller is done."""
    image_upload = await read_image(request, settings)
    policy = settings.default_upsample if upsample is None else upsample
    async with get_admission(request).slot(receive=request.receive):
        upload, weight = await to_thread.run_sync(read_and_weigh, image_upload, settings.max_pixels)
        async with budget.hold(weight):
            batch = await to_thread.run_sync(run_photos, pipeline, [upload], policy, max_faces)
            yield batch.single()


@router.post(
    "",
    response_model=LandmarksResponse,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Every face in the photo with its 68 landmarks",
)
async def landmarks(
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: UpsampleQuery = None,
    max_faces: MaxFaces = None,
) -> Response:
    async with _processed(request, pipeline, settings, budget, upsample, max_faces) as photo:
        body = photo.to_dict()
    return json_response({**body, "model": pipeline.model_ref()})


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
    pipeline: PipelineDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: UpsampleQuery = None,
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
    async with _processed(request, pipeline, settings, budget, upsample, max_faces) as photo:
        encoded = await to_thread.run_sync(photo.rendered, fmt, pose)
    return Response(
        encoded,
        media_type=f"image/{fmt}",
        headers={"X-Faces": str(len(photo.faces)), "X-Detection-Upsample": str(photo.level)},
    )


@router.post(
    "/align",
    response_model=AlignResponse,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Every face with its landmarks, pose and an aligned face chip",
)
async def align(
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: UpsampleQuery = None,
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
    async with _processed(request, pipeline, settings, budget, upsample, max_faces) as photo:
        chips = await to_thread.run_sync(photo.aligned_faces, size, template, border)
        body = photo.to_dict(faces=chips)
    extra = {"size": size, "template": template, "border": border, "model": pipeline.model_ref()}
    return json_response({**body, **extra})
