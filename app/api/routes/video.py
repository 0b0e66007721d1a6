"""POST /landmarks/video: a video file in, its tracked faces streamed out as NDJSON, frame by frame.

The upload is spooled to a temporary file (OpenCV's decoder reads files), its header checked before
the answer starts (so a bad file gets an ordinary 4xx), then :func:`app.inference.video.video_lines`
yields one line per processed frame. Each frame's work takes one slot of the worker's admission queue
and gives it back before the next frame queues again: photo requests waiting in the queue start between
two frames of a long video instead of after it. A client that disconnects stops the work at the next
frame.
"""

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any

import anyio
from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from app.api import metrics
from app.api.admission import AdmissionRefused
from app.api.deps import PipelineDep, SettingsDep, get_admission
from app.api.errors import ApiError
from app.api.routes.landmarks import ERRORS, UpsampleQuery
from app.api.state import service_state
from app.config import Settings, build_tracker_options
from app.inference import InferenceError
from app.inference.detector import UpsamplePolicy
from app.inference.pipeline import PhotoPipeline
from app.inference.video import VideoLimits, VideoReader, video_lines

logger = logging.getLogger("app.video")

router = APIRouter(prefix="/landmarks", tags=["video"])

NDJSON = "application/x-ndjson"
# Copy the upload to the decoder's file in pieces of this size.
COPY_CHUNK = 1 << 20

VIDEO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {
                        "video": {
                            "type": "string",
                            "format": "binary",
                            "description": "The video: MP4 (H.264), AVI (MJPEG, XVID), WebM, WMV, MOV...",
                        }
                    },
                }
            }
        },
    }
}

VIDEO_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {
        "model": ERRORS[400]["model"],
        "description": "invalid_video: not a decodable video (random bytes, a photo, no frame, no frame "
        "rate); invalid_request: malformed multipart body or no `video` field",
    },
    413: {
        "model": ERRORS[413]["model"],
        "description": "payload_too_large (LANDMARKS_MAX_VIDEO_BYTES), too_many_frames "
        "(LANDMARKS_MAX_VIDEO_FRAMES), too_many_pixels (each frame against LANDMARKS_MAX_PIXELS)",
    },
}

STREAM_DESCRIPTION = """\
Streamed as NDJSON (`application/x-ndjson`), one JSON object per line, written as frames are processed:

1. `{"video": {"width", "height", "fps", "frames"}, "model": {"name", "version"}}`
2. one line per processed frame: `{"frame": i, "time": seconds, "faces": [face, ...]}`; each face is the
   `/landmarks` face object (`box`, `score`, `landmarks`, `pose`, `error_estimate`) plus `track_id` (an
   integer that stays with the face while it is in view) and `detected` (the detector ran on this frame
   and found it: its box and score are the detector's; otherwise the face was followed from its last
   points and its box placed as the detector's last one was);
3. `{"summary": {"frames", "tracks", "detector_runs", "seconds"}}`, or, when the video breaks after the
   answer has started, `{"error": {"code", "message"}}` (`truncated_video`, `too_many_frames`, `overloaded`,
   `internal_error`).

Errors found before the first line (not a video, too large, too long) are ordinary JSON errors.
"""


def spool(upload: UploadFile, suffix: str) -> Path:
    """The upload copied to a temporary file the decoder can open (the caller removes it)."""
    with tempfile.NamedTemporaryFile(prefix="landmarks-video-", suffix=suffix, delete=False) as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, COPY_CHUNK)
        return Path(out.name)


async def read_video_upload(request: Request, settings: Settings) -> Path:
    """The `video` field of the multipart body, spooled to a temporary file."""
    try:
        form = await request.form(max_files=1, max_fields=16)
    except Exception as exc:
        if getattr(exc, "status_code", 400) == 413:
            raise ApiError(413, "payload_too_large", str(exc)) from exc
        raise ApiError(400, "invalid_request", f"cannot read the multipart body: {exc}") from exc
    upload = form.get("video")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "invalid_request", "send the video as a file in the multipart field 'video'")
    if upload.size is not None and upload.size > settings.max_video_bytes:
        raise ApiError(
            413, "payload_too_large", f"the video exceeds the limit of {settings.max_video_bytes} bytes"
        )
    # Never the client's file name: FFmpeg picks some formats by extension alone, and an .m3u8 playlist
    # makes it open the files and URLs listed inside (the server's own files, other hosts); the
    # formats served are all recognised from their bytes.
    suffix = ".video"
    try:
        return await to_thread.run_sync(spool, upload, suffix)
    finally:
        await form.close()


def probe_video(path: Path, pipeline: PhotoPipeline, settings: Settings, policy: UpsamplePolicy) -> int:
    """The pixels of the video's frames, its header checked (the decoder is closed again at once)."""
    with open_video(path, pipeline, settings, policy) as reader:
        return reader.info.width * reader.info.height


async def hold_video_pixels(request: Request, stack: AsyncExitStack, pixels: int, settings: Settings) -> None:
    """Wait for the video's frame pixels in the worker's video budget, held until ``stack`` closes: large
    videos decode one after another, small ones side by side (first come, first served)."""
    budget = service_state(request.app).video_budget
    assert budget is not None, "the lifespan makes the budget before serving"
    try:
        with anyio.fail_after(settings.queue_timeout_seconds):
            await stack.enter_async_context(budget.hold(pixels))
    except TimeoutError as exc:
        metrics.REJECTED.labels(reason="queue_timeout").inc()
        raise AdmissionRefused(
            "queue_timeout", "other large videos are being decoded on this worker; retry", 1
        ) from exc


def open_video(
    path: Path, pipeline: PhotoPipeline, settings: Settings, policy: UpsamplePolicy
) -> VideoReader:
    """The video opened and its header checked against the limits, the detection limit included (each
    frame is a photo to the detector)."""
    reader = VideoReader(path, VideoLimits(settings.max_pixels, settings.max_video_frames))
    try:
        pipeline.detection_level(reader.info.width, reader.info.height, policy)
    except Exception:
        reader.close()
        raise
    return reader


def error_line(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, InferenceError):
        return {"error": {"code": exc.code, "message": exc.message}}
    if isinstance(exc, AdmissionRefused):
        return {"error": {"code": "overloaded", "reason": exc.reason, "message": exc.message}}
    return {"error": {"code": "internal_error", "message": "the video failed inside the service"}}


def encode(line: dict[str, Any]) -> bytes:
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


@router.post(
    "/video",
    responses={200: {"content": {NDJSON: {}}, "description": STREAM_DESCRIPTION}, **VIDEO_ERRORS},
    response_class=StreamingResponse,
    openapi_extra=VIDEO_BODY,
    summary="Every face of every frame of a video, tracked and smoothed, streamed as NDJSON",
)
async def video(
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    upsample: UpsampleQuery = None,
    stride: Annotated[int, Query(ge=1, le=10_000, description="Process every Nth frame.")] = 1,
    max_frames: Annotated[
        int | None, Query(ge=1, description="Process at most this many frames (after the stride).")
    ] = None,
    smoothing: Annotated[
        bool, Query(description="Filter each face's points over time (One-Euro); false: the raw points.")
    ] = True,
) -> StreamingResponse:
    path = await read_video_upload(request, settings)
    options = build_tracker_options(settings, smoothing=smoothing, upsample=upsample)
    held = AsyncExitStack()
    try:
        probe = service_state(request.app).video_probe
        assert probe is not None, "the lifespan makes the lock before serving"
        async with probe:
            pixels = await to_thread.run_sync(probe_video, path, pipeline, settings, options.upsample)
        await hold_video_pixels(request, held, pixels, settings)
        reader = await to_thread.run_sync(open_video, path, pipeline, settings, options.upsample)
    except BaseException:
        await held.aclose()
        path.unlink(missing_ok=True)
        raise
    lines = video_lines(pipeline.predictor, reader, options, stride=stride, max_frames=max_frames)
    try:
        first = await to_thread.run_sync(next, lines)  # the frame limit is checked here
    except BaseException:
        lines.close()
        reader.close()
        await held.aclose()
        path.unlink(missing_ok=True)
        raise
    return StreamingResponse(
        _stream(request, first, lines, reader, path, held),
        media_type=NDJSON,
        # X-Accel-Buffering: a proxy such as nginx passes each line on as it comes instead of buffering.
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no"},
    )


def _next_or_none(lines: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
    return next(lines, None)


async def _stream(
    request: Request,
    first: dict[str, Any],
    lines: Iterator[dict[str, Any]],
    reader: VideoReader,
    path: Path,
    held: AsyncExitStack,
) -> AsyncIterator[bytes]:
    admission = get_admission(request)
    metrics.STREAMS.labels(source="video").inc()
    try:
        yield encode(first)
        while True:
            try:
                async with admission.slot():
                    line = await to_thread.run_sync(_next_or_none, lines)
            except Exception as exc:
                if not isinstance(exc, InferenceError | AdmissionRefused):
                    logger.exception("video failed mid-stream")
                yield encode(error_line(exc))
                return
            if line is None:
                return
            if "frame" in line:
                metrics.FRAMES.labels(source="video", outcome="processed").inc()
            yield encode(line)
    finally:
        metrics.STREAMS.labels(source="video").dec()
        with anyio.CancelScope(shield=True):  # also when the client went away
            await to_thread.run_sync(_close, lines, reader, path)
            await held.aclose()


def _close(lines: Iterator[dict[str, Any]], reader: VideoReader, path: Path) -> None:
    close = getattr(lines, "close", None)
    if close is not None:
        close()
    reader.close()
    path.unlink(missing_ok=True)
