"""The HTTP contract, as users read it in /docs."""

from typing import Any

from pydantic import BaseModel, Field


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
        description="Stable code: invalid_image, invalid_request, payload_too_large, too_many_pixels, "
        "unsupported_media_type, validation_error, overloaded, shutting_down, not_ready, not_found, "
        "method_not_allowed, internal_error."
    )
    message: str
    request_id: str | None = None
    reason: str | None = Field(
        None, description="For a 503 from the admission queue: queue_full, queue_timeout or shutting_down."
    )
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
