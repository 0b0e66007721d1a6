"""POST /landmarks/batch: several photos in one request; the faces of all of them go through the network
together (``LandmarkPredictor.predict_many``). One bad photo is an error in its own result, never of the
request."""

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api import metrics
from app.api.bodies import BATCH_BODY, ImageUpload, read_batch
from app.api.budget import fitting_groups
from app.api.deps import PixelBudgetDep, PredictorDep, SettingsDep, get_admission
from app.api.errors import item_error
from app.api.routes.landmarks import (
    ERRORS,
    MaxFaces,
    Upsample,
    decode_upload,
    json_response,
    model_ref,
    photo_result,
    read_and_weigh,
    record_detection,
)
from app.api.schemas import BatchResponse, ErrorResponse
from app.config import Settings, UpsamplePolicy
from app.inference import InferenceError, LandmarkPredictor

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
    data: bytes
    weight: int  # pixels the header announces, for the budget
    content_type: str | None


def read_all(uploads: list[ImageUpload], max_pixels: int) -> tuple[list[ReadImage], dict[int, Outcome]]:
    """The bytes and pixel weight of each upload, and the errors of those that cannot be read (bad
    base64). Runs in a worker thread."""
    readable: list[ReadImage] = []
    failed: dict[int, Outcome] = {}
    for index, upload in enumerate(uploads):
        try:
            data, weight = read_and_weigh(upload, max_pixels)
        except InferenceError as exc:
            failed[index] = {"error": item_error(exc)}
            continue
        readable.append(ReadImage(index, data, weight, upload.content_type))
    return readable, failed


def process_group(
    predictor: LandmarkPredictor,
    group: list[ReadImage],
    settings: Settings,
    policy: UpsamplePolicy,
    max_faces: int | None,
) -> dict[int, Outcome]:
    """Decode each image, then one ``predict_many`` over those that decoded. Runs in a worker thread."""
    outcomes: dict[int, Outcome] = {}
    images: list[np.ndarray] = []
    levels: list[int] = []
    indices: list[int] = []
    for item in group:
        started = time.perf_counter()
        try:
            image, level = decode_upload(item.data, item.content_type, predictor.detector, settings, policy)
        except InferenceError as exc:
            outcomes[item.index] = {"error": item_error(exc)}
            continue
        metrics.STAGE_LATENCY.labels(stage="decode").observe(time.perf_counter() - started)
        images.append(image)
        levels.append(level)
        indices.append(item.index)
    started = time.perf_counter()
    all_faces = predictor.predict_many(images, levels, max_faces)
    metrics.STAGE_LATENCY.labels(stage="detect_regress_batch").observe(time.perf_counter() - started)
    for index, image, level, faces in zip(indices, images, levels, all_faces, strict=True):
        record_detection(len(faces), level)
        outcomes[index] = photo_result(image, [face.to_dict() for face in faces], level)
    return outcomes


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses=BATCH_ERRORS,
    openapi_extra=BATCH_BODY,
    summary="Several photos in one request, each with its faces and their 68 landmarks",
)
async def batch(
    request: Request,
    predictor: PredictorDep,
    settings: SettingsDep,
    budget: PixelBudgetDep,
    upsample: Upsample = None,
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
                outcomes.update(
                    await to_thread.run_sync(process_group, predictor, members, settings, policy, max_faces)
                )
    results = [
        {"index": index, **({"id": upload.id} if upload.id is not None else {}), **outcomes[index]}
        for index, upload in enumerate(uploads)
    ]
    return json_response({"results": results, "model": model_ref(predictor)})
