"""Service settings, read once from the environment (prefix ``LANDMARKS_``)."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.inference import FaceDetector, LandmarkPredictor
from app.inference.detector import DEFAULT_AUTO_SCAN_PIXELS, MAX_UPSAMPLE
from app.inference.pipeline import PhotoPipeline
from app.inference.runtime import DEFAULT_RUNTIME, Runtime
from app.inference.tracking import TrackerOptions

# What a request (or LANDMARKS_DEFAULT_UPSAMPLE) may ask for: a dlib upsampling level, or "auto".
UpsamplePolicy = Literal["auto"] | Annotated[int, Field(ge=0, le=MAX_UPSAMPLE)]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "landmarks.pt"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDMARKS_", env_file=None, extra="ignore")

    model_path: Path = Field(
        DEFAULT_MODEL_PATH,
        description="Model to serve: an ONNX export's manifest (.json), or a checkpoint (.pt), whose export "
        "beside it (same name, .json) the ONNX runtimes serve.",
    )
    runtime: Runtime = Field(
        DEFAULT_RUNTIME,
        description="What runs the networks: onnxruntime (the fastest measured, the default), openvino "
        "(pip install openvino), or torch (the checkpoint itself; needs the train extra).",
    )
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Largest accepted upload (bytes).")
    max_pixels: int = Field(40_000_000, gt=0, description="Largest accepted image (width x height).")
    max_detect_pixels: int = Field(
        64_000_000,
        gt=0,
        description="Most pixels the face detector may scan per request: width x height x 4^upsample "
        "(after detect_max_side); bounds the memory and time of one detection.",
    )
    default_upsample: UpsamplePolicy = Field(
        "auto",
        description="Detection policy when the query names none: 0-2 (dlib upsampling), or auto (the "
        "highest upsampling whose scanned pixels stay within auto_scan_pixels).",
    )
    auto_scan_pixels: int = Field(
        DEFAULT_AUTO_SCAN_PIXELS,
        gt=0,
        description="Budget of upsample=auto: most pixels it lets the detector scan, width x height x "
        "4^upsample (capped at max_detect_pixels). 2,000,000: 500x375 photos get 1, photos of 0.5 MP and "
        "more get 0.",
    )
    detect_max_side: int = Field(
        0, ge=0, description="Detect on a copy whose longer side is at most this (0 = full resolution)."
    )
    detect_on_gray: bool = Field(True, description="Run the HOG detector on a grayscale copy (faster).")
    flip_test_time: bool | None = Field(
        None, description="Average each face with its mirror image; unset = the checkpoint's choice."
    )
    flip_hard_faces: bool = Field(
        True,
        description="Average only the faces whose error estimate passes the checkpoint's hard_face_flip "
        "threshold with their mirror image (about 1 face in 10 on the training photos).",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="Intra-op threads of the network runtime (whichever it is; the name is older) and of "
        "OpenCV, per worker process.",
    )
    max_in_flight: int = Field(
        4,
        ge=1,
        description="Landmark requests running at once per worker (one image each); the others queue. "
        "Measured with bench/load.py on 2 cores, one worker, 16 clients: 1, 2, 3, 4 running give 10.2, "
        "11.4, 13.3, 14.1 requests/s (decoding and the networks release the GIL while dlib holds it).",
    )
    max_pixels_in_flight: int = Field(
        4_000_000,
        gt=0,
        description="Image pixels (width x height, from the headers) a worker decodes, detects and "
        "answers at once; past them photos wait their turn in order, and one larger than this runs alone. "
        "Bounds the decoded images in memory (about 7 bytes a pixel while decoding, 4 after) on top of "
        "max_in_flight: four 12-megapixel phone photos would otherwise hold ~200 MiB at once. 4,000,000 "
        "lowered the peak under bench.load's 64 clients by ~12 MiB at the same throughput. The waits show "
        "in landmarks_pixel_budget_wait_seconds.",
    )
    max_queue: int = Field(
        64,
        ge=0,
        description="Landmark requests waiting per worker before answering 503 overloaded (queue_full). "
        "Each holds its upload: at most 64 x 10 MiB = 640 MiB, about 64 MiB for ordinary photos.",
    )
    queue_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest wait in the queue before answering 503 overloaded (queue_timeout). A full "
        "queue (64) drains in about 5 s at the 13 requests/s one worker serves (bench/load.py): 10 s "
        "serves 64 waiting clients with no refusal and stays under common 30 s client timeouts.",
    )
    shutdown_grace_seconds: float = Field(
        2.0,
        ge=0,
        description="After SIGTERM, queued requests may still start for this long; the rest are answered "
        "503 shutting_down. Keep it plus the longest request under the orchestrator's grace period.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    render_format: Literal["png", "jpeg"] = Field("jpeg", description="Default image format of /render.")
    max_batch: int = Field(16, ge=1, le=256, description="Most images in one POST /landmarks/batch.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys; when any is set (here or in api_keys_file), every "
        "/landmarks* route and /model need one.",
    )
    api_keys_file: Path | None = Field(
        None, description="A file of API keys, one per line (a mounted secret); read once at start-up."
    )
    max_video_bytes: int = Field(
        100 * 1024 * 1024, gt=0, description="Largest accepted video upload (bytes), POST /landmarks/video."
    )
    max_video_frames: int = Field(
        18_000,
        gt=0,
        description="Most frames one video request may decode (10 minutes at 30 fps); longer videos get "
        "413 too_many_frames unless max_frames and stride bring them within.",
    )
    track_detect_every: int = Field(
        10,
        ge=1,
        description="Frames between whole-frame detections while faces are tracked (video and stream). "
        "Between them each face is followed from its last points, with no detector; a face that looks "
        "lost, or a stream with no face, triggers a detection at once.",
    )
    track_lost_error: float = Field(
        0.08,
        gt=0,
        description="Error estimate (NME box) past which a followed face counts as lost: the detector "
        "then runs on the frame, and the track ends unless it finds the face again.",
    )
    smoothing_min_cutoff: float = Field(
        0.5, gt=0, description="One-Euro filter: cut-off (Hz) of a still face's points (lower = smoother)."
    )
    smoothing_beta: float = Field(
        15.0,
        ge=0,
        description="One-Euro filter: how fast the cut-off rises with the face's speed (in face sizes per "
        "second); higher = less lag on moving faces, more jitter.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins browsers may call the API from ('*' for any); empty = no CORS.",
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        """``a, b,`` from the environment -> ``["a", "b"]`` (blanks dropped); lists pass through."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()


def build_detector(settings: Settings) -> FaceDetector:
    """The face detector these settings describe (grayscale, max side, auto's scan budget)."""
    return FaceDetector(
        on_gray=settings.detect_on_gray,
        max_side=settings.detect_max_side,
        # auto never picks a level the detection limit would refuse.
        auto_scan_pixels=min(settings.auto_scan_pixels, settings.max_detect_pixels),
    )


def build_predictor(settings: Settings, model_path: Path | None = None) -> LandmarkPredictor:
    """The predictor these settings describe (detector options, flip averaging), loading
    ``model_path`` or the configured checkpoint. Raises ModelLoadError for a bad checkpoint."""
    return LandmarkPredictor.from_checkpoint(
        model_path or settings.model_path,
        build_detector(settings),
        flip_test_time=settings.flip_test_time,
        flip_hard_faces=settings.flip_hard_faces,
        runtime=settings.runtime,
        threads=settings.torch_threads,
    )


def build_pipeline(settings: Settings, predictor: LandmarkPredictor) -> PhotoPipeline:
    """The photo pipeline of ``predictor`` within these settings' pixel and detection limits."""
    return PhotoPipeline(
        predictor, max_pixels=settings.max_pixels, max_detect_pixels=settings.max_detect_pixels
    )


def build_tracker_options(
    settings: Settings, *, smoothing: bool = True, upsample: UpsamplePolicy | None = None
) -> TrackerOptions:
    """How a video or a live stream is tracked under these settings (``upsample`` None: the default)."""
    return TrackerOptions(
        detect_every=settings.track_detect_every,
        lost_error=settings.track_lost_error,
        smoothing=smoothing,
        min_cutoff=settings.smoothing_min_cutoff,
        beta=settings.smoothing_beta,
        upsample=settings.default_upsample if upsample is None else upsample,
    )
