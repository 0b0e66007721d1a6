"""The HTTP contract, as users read it in /docs."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class ImageSize(BaseModel):
    width: int = Field(description="Width of the upright image in pixels (after EXIF rotation).")
    height: int = Field(description="Height of the upright image in pixels.")


class BoxOut(BaseModel):
    left: int = Field(description="dlib rectangle, original pixels; may be negative near the border.")
    top: int
    width: int = Field(description="right - left + 1, as dlib counts it.")
    height: int = Field(description="bottom - top + 1.")


class FaceOut(BaseModel):
    box: BoxOut
    score: float = Field(description="dlib's detection score (higher is more certain).")
    landmarks: list[tuple[float, float]] = Field(
        min_length=68,
        max_length=68,
        description="68 (x, y) points in original-image pixels, iBUG 300-W order.",
    )


class ModelRef(BaseModel):
    name: str
    version: str


class LandmarksResponse(BaseModel):
    image: ImageSize
    faces: list[FaceOut] = Field(description="Every face found, largest first; empty when none.")
    model: ModelRef


class ErrorBody(BaseModel):
    code: str = Field(
        description="Stable code: invalid_image, invalid_request, unauthorized, payload_too_large, "
        "too_many_pixels, unsupported_media_type, validation_error, overloaded, not_ready, not_found, "
        "method_not_allowed, internal_error."
    )
    message: str
    request_id: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class HealthStatus(BaseModel):
    status: str
    reason: str | None = None


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str
    input_size: int
    num_points: int
    mean: list[float]
    std: list[float]
    flip_test_time: bool
    metadata: dict[str, Any]


Base64Image = Annotated[
    str,
    Field(
        description="The photo's file (JPEG, PNG, ...) in base64 (standard or URL-safe alphabet; line breaks "
        "and missing padding are accepted), optionally as a data URL: `data:image/jpeg;base64,...`."
    ),
]


class ImageJson(BaseModel):
    """The JSON body of the single-image routes."""

    model_config = ConfigDict(extra="forbid")

    image: Base64Image


class BatchItemJson(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=256, description="Your name for the image, echoed in its result.")
    image: Base64Image


class BatchJson(BaseModel):
    """The JSON body of POST /landmarks/batch."""

    model_config = ConfigDict(extra="forbid")

    images: list[BatchItemJson] = Field(
        min_length=1, description="The photos, at most LANDMARKS_MAX_BATCH (16 by default)."
    )


class ItemError(BaseModel):
    code: str = Field(description="The code the single-image route would answer with.")
    message: str
    status: int = Field(description="The HTTP status the single-image route would answer with.")


class BatchResult(BaseModel):
    index: int = Field(description="Position of the image in the request, from 0.")
    id: str | None = Field(None, description="The image's `id` (JSON) or file name (multipart), if any.")
    image: ImageSize | None = Field(None, description="Present when the image was processed.")
    faces: list[FaceOut] | None = Field(None, description="As in POST /landmarks; with `image`.")
    error: ItemError | None = Field(None, description="Present instead of `image` and `faces`.")


class BatchResponse(BaseModel):
    results: list[BatchResult] = Field(description="One result per image, in request order.")
    model: ModelRef
