"""POST /landmarks/batch: several photos in one request; the faces of all of them go through the network
together (``PhotoPipeline.run``). One bad photo is an error in its own result, never of the request."""

from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.bodies import BATCH_BODY, ImageUpload, read_batch
from app.api.budget import fitting_groups
from app.api.deps import PipelineDep, PixelBudgetDep, SettingsDep, get_admission
from app.api.errors import item_error
from app.api.routes.landmarks import (
    ERRORS,
    MaxFaces,
    UpsampleQuery,
    json_response,
    read_and_weigh,
    run_photos,
)
from app.api.schemas import BatchResponse, ErrorResponse
from app.config import UpsamplePolicy
from app.inference import InferenceError
from app.inference.pipeline import PhotoPipeline, Upload

router = APIRouter(prefix="/landmarks", tags=["landmarks"])

BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {
        "model": ErrorResponse,
        "description": "invalid_request: malformed multipart body (a bad image is an `error` in its own "
        "result, with the status the single-image route would give it)",
    },
    413: {"model": ErrorResponse, "description": "payload_too_large: the images together are over the limit"},
    415: {"model": ErrorResponse, "description": "unsupported_media_type: neither multipart nor JSON"},
}

Outcome = dict[str, Any]


@dataclass(frozen=True)
class ReadImage:
    index: int  # position in the request
    upload: Upload
    weight: int  # pixels the header announces, for the budget


def read_all(uploads: list[ImageUpload], max_pixels: int) -> tuple[list[ReadImage], dict[int, Outcome]]:
    """The bytes and pixel weight of each upload, and the errors of those that cannot be read (bad
    base64). Runs in a worker thread."""
    readable: list[ReadImage] = []
    failed: dict[int, Outcome] = {}
    for index, image_upload in enumerate(uploads):
        try:
            upload, weight = read_and_weigh(image_upload, max_pixels)
        except InferenceError as exc:
            failed[index] = {"error": item_error(exc)}
            continue
        readable.append(ReadImage(index, upload, weight))
    return readable, failed


def process_group(
    pipeline: PhotoPipeline, group: list[ReadImage], policy: UpsamplePolicy, max_faces: int | None
) -> dict[int, Outcome]:
    """One pipeline run over the group; each photo's JSON or error. Runs in a worker thread."""
    batch = run_photos(pipeline, [item.upload for item in group], policy, max_faces)
    return {
        item.index: {"error": item_error(result)} if isinstance(result, InferenceError) else result.to_dict()
        for item, result in zip(group, batch.results, strict=True)
    }


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses=BATCH_ERRORS,
    openapi_extra=BATCH_BODY,
    summary="Several photos in one request, each with its faces and their 68 landmarks",
)
async def batch(
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: UpsampleQuery = None,
    max_faces: MaxFaces = None,
) -> Response:
    uploads = await read_batch(request, settings)
    policy = settings.default_upsample if upsample is None else upsample
    # Every image counts in the admission queue (a batch of n waits for n slots, capped at what the
    # worker runs at once) and in the pixel budget. Images that fit the budget together are decoded
    # together and go through the networks together; larger ones take their turns.
    async with get_admission(request).slot(weight=len(uploads), receive=request.receive):
        readable, outcomes = await to_thread.run_sync(read_all, uploads, settings.max_pixels)
        for group in fitting_groups([item.weight for item in readable], budget.capacity):
            members = [readable[i] for i in group]
            async with budget.hold(sum(item.weight for item in members)):
                outcomes.update(await to_thread.run_sync(process_group, pipeline, members, policy, max_faces))
    results = [
        {"index": index, **({"id": upload.id} if upload.id is not None else {}), **outcomes[index]}
        for index, upload in enumerate(uploads)
    ]
    return json_response({"results": results, "model": pipeline.model_ref()})
