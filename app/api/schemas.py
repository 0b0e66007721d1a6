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


class PoseOut(BaseModel):
    yaw: float = Field(
        description="Degrees; > 0 when the face turns towards the image's right (the subject's left). "
        "A mirrored photo flips its sign."
    )
    pitch: float = Field(description="Degrees; > 0 when the face tilts up (chin raised).")
    roll: float = Field(
        description="Degrees; > 0 when the face is rotated counter-clockwise in the image: a photo "
        "rotated by t degrees counter-clockwise has roll + t. A mirrored photo flips its sign."
    )


class FaceOut(BaseModel):
    box: BoxOut
    score: float = Field(description="dlib's detection score (higher is more certain).")
    landmarks: list[tuple[float, float]] = Field(
        min_length=68,
        max_length=68,
        description="68 (x, y) points in original-image pixels, iBUG 300-W order.",
    )
    pose: PoseOut = Field(
        description="Head pose from the landmarks (solvePnP against a 3D mean face), relative to the line "
        "of sight from the camera to the face."
    )
    error_estimate: float | None = Field(
        default=None,
        description="Expected NME (box) of this face's landmarks (mean point error / sqrt(W x H) of the "
        "box), predicted by the network from the crop and calibrated with the detector's score and the "
        "face's size: above 0.08 the points are likely wrong (see the "
        "model card for how well it ranks and flags errors). Absent where the model has no error head.",
    )


class AlignedFaceOut(FaceOut):
    transform: tuple[tuple[float, float, float], tuple[float, float, float]] = Field(
        description="2x3 similarity from image pixels to chip pixels: [[a, b, tx], [c, d, ty]], "
        "chip = [[a, b], [c, d]] @ [x, y] + [tx, ty] (pixel centres at integers)."
    )
    chip: str = Field(description="The aligned face, size x size, as a base64 PNG.")


class ModelRef(BaseModel):
    name: str
    version: str


class DetectionInfo(BaseModel):
    upsample: int = Field(
        ge=0,
        le=2,
        description="dlib upsampling the detection ran at: the query's 0-2, or what auto chose for this "
        "image (the highest level whose width x height x 4^upsample fits LANDMARKS_AUTO_SCAN_PIXELS).",
    )


class LandmarksResponse(BaseModel):
    image: ImageSize
    detection: DetectionInfo
    faces: list[FaceOut] = Field(description="Every face found, largest first; empty when none.")
    model: ModelRef


class AlignResponse(BaseModel):
    image: ImageSize
    detection: DetectionInfo
    size: int = Field(description="Side of every chip in pixels.")
    template: str = Field(description="arcface or dlib.")
    border: str = Field(
        description="How chip pixels outside the photo are filled: black, replicate, reflect."
    )
    faces: list[AlignedFaceOut] = Field(description="Every face found, largest first; empty when none.")
    model: ModelRef


class ErrorBody(BaseModel):
    code: str = Field(
        description="Stable code: invalid_image, invalid_request, unauthorized, payload_too_large, "
        "too_many_pixels, unsupported_media_type, validation_error, overloaded, shutting_down, not_ready, "
        "not_found, method_not_allowed, internal_error."
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


class StageInfo(BaseModel):
    crop: str = Field(
        description="box: the detector's box as it is; landmarks: the eye-aligned frame of the points "
        "of the stage before (a cascade)."
    )
    arch: str
    input_size: int
    heads: list[str] = Field(
        description="Label conventions of the stage's landmark heads; the first is served."
    )
    error_head: bool = Field(description="Whether the stage predicts its own error (error_estimate).")


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str
    input_size: int
    num_points: int
    mean: list[float]
    std: list[float]
    flip_test_time: bool
    hard_face_flip: float | None = Field(
        description="Faces whose raw error estimate (NME box) passes this are averaged with their mirror "
        "image; null when every face is (flip_test_time) or none is."
    )
    stages: list[StageInfo] = Field(description="The networks run one after the other on each face.")
    served_head: str = Field(description="Label convention of the served points (300w: iBUG 300-W).")
    runtime: str = Field(description="What runs the networks: onnxruntime, openvino or torch.")
    export: dict[str, Any] | None = Field(
        None,
        description="The ONNX export served: manifest, its files with their sha256, the checkpoint it was "
        "exported from and that file's sha256, opset, exporting torch version, largest difference from "
        "the torch networks; null when the networks were loaded from a checkpoint.",
    )
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
    detection: DetectionInfo | None = Field(None, description="As in POST /landmarks; with `image`.")
    faces: list[FaceOut] | None = Field(None, description="As in POST /landmarks; with `image`.")
    error: ItemError | None = Field(None, description="Present instead of `image` and `faces`.")


class BatchResponse(BaseModel):
    results: list[BatchResult] = Field(description="One result per image, in request order.")
    model: ModelRef
