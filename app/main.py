"""The FastAPI application: ``uvicorn app.main:app``.

The lifespan loads the checkpoint (a missing or corrupt one stops start-up with a non-zero exit), then
warms the model up in the background; /health/ready answers 503 until that warm-up has run. At SIGTERM
the worker turns not ready and its admission queue starts its shutdown grace (``app.api.admission``).
"""

import asyncio
import ctypes
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import cv2
from anyio import to_thread
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app.api.admission import AdmissionQueue, on_exit_signals
from app.api.auth import UNAUTHORIZED, load_api_keys, require_api_key
from app.api.budget import PixelBudget
from app.api.errors import install_error_handlers
from app.api.middleware import RequestContextMiddleware
from app.api.routes import batch, health, landmarks, meta, stream, video
from app.api.state import ServiceState, service_state
from app.config import Settings, build_pipeline, build_predictor, get_settings
from app.inference import LandmarkPredictor
from app.logging_setup import configure_logging
from app.web.routes import install_page

logger = logging.getLogger("app.main")


# glibc's mallopt parameters, and the environment variables that set them (which take precedence).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MALLOC_TUNING = {
    "MALLOC_ARENA_MAX": (M_ARENA_MAX, 1),
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 4 << 20),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 16 << 20),
}


def limit_malloc_fragmentation() -> None:
    """Keep freed image buffers from piling up in glibc's heaps, without paying for it on every request.

    Each worker thread that decodes an image gets its own malloc arena (up to 8 per core), and glibc's
    adaptive mmap threshold soon keeps buffers of up to 32 MB in those arenas after they are freed. Under
    sustained mixed load one worker's resident memory climbed from 0.5 to 1.3 GB in a minute and was
    still climbing. So: one arena (two left a worker's peak under bench.load's 64 clients ~15 MiB
    higher, at the same throughput: the threads mostly take turns anyway); buffers of 4 MB and more
    (decoded photos of 1.4 megapixels and up) always mmapped, so returned to the system when freed; and
    up to 16 MB of free space kept at the top of the heap. Smaller buffers then reuse heap memory
    instead of being mapped and faulted in afresh on every request: with buffers of 1 MB and up mmapped
    and the default 128 KB trim threshold, the 24-face photo's crops and networks took 70-100 ms instead
    of 40-47 (measured in a worker thread, as served, with the torch runtime). No-op off glibc, and
    where the variables are set.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    for variable, (parameter, value) in MALLOC_TUNING.items():
        if variable not in os.environ:
            mallopt(parameter, value)


async def _warm_up(state: ServiceState, predictor: LandmarkPredictor) -> None:
    try:
        await to_thread.run_sync(predictor.warm_up)
    except Exception as exc:
        state.not_ready_reason = f"warm-up failed: {exc}"
        logger.exception("model warm-up failed; the service stays not ready")
        return
    if state.shutting_down:  # SIGTERM came during the warm-up: stay not ready to the end
        return
    state.ready = True
    state.not_ready_reason = None
    logger.info("ready")


def load_predictor(settings: Settings) -> LandmarkPredictor:
    """The configured predictor. A checkpoint that cannot be loaded is logged (one line that says why)
    and raised as RuntimeError, which stops start-up with a non-zero exit."""
    try:
        return build_predictor(settings)
    except Exception as exc:
        logger.error(
            f"cannot load the model, exiting: {exc}",
            extra={"model_path": str(settings.model_path), "reason": str(exc)},
        )
        raise RuntimeError(f"cannot load the model: {exc}") from exc


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = service_state(app)
    settings = state.settings
    limit_malloc_fragmentation()
    cv2.setNumThreads(settings.torch_threads)
    state.shutting_down = False  # a lifespan may run again on the same app (tests do)
    state.not_ready_reason = "loading the model"
    predictor = load_predictor(settings)
    state.pipeline = build_pipeline(settings, predictor)
    state.pixel_budget = PixelBudget(settings.max_pixels_in_flight)
    state.video_budget = PixelBudget(settings.max_pixels, "videos")
    state.video_probe = anyio.Lock()
    logger.info(
        "model loaded",
        extra={
            "model_path": str(settings.model_path),
            "model": predictor.name,
            "version": predictor.version,
            "flip_test_time": predictor.flip_test_time,
            "hard_face_flip": predictor.hard_face_flip,
        },
    )
    state.not_ready_reason = "warming up"
    warm_up = asyncio.create_task(_warm_up(state, predictor))

    def begin_shutdown() -> None:
        state.shutting_down = True
        state.ready = False
        state.not_ready_reason = "shutting down"
        state.admission.begin_shutdown(settings.shutdown_grace_seconds)
        logger.info("shutting down: queued requests may start for %g s more", settings.shutdown_grace_seconds)

    try:
        with on_exit_signals(begin_shutdown):
            yield
    finally:
        state.shutting_down = True
        state.ready = False
        warm_up.cancel()
        logger.info("shutting down")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    # /docs and /redoc with Swagger UI and ReDoc served from the package's own files, not a CDN.
    app = FastAPIOffline(
        title="Face landmarks",
        version="0.1.0",
        summary="Every face in a photo with its 68 iBUG 300-W landmarks.",
        lifespan=lifespan,
    )
    state = ServiceState(
        settings=settings,
        admission=AdmissionQueue(settings.max_in_flight, settings.max_queue, settings.queue_timeout_seconds),
        api_keys=load_api_keys(settings),
    )
    app.state.service = state
    install_error_handlers(app)
    # With API keys on, the client routes need one (and OpenAPI declares the schemes); health, metrics
    # and the docs stay open.
    keys_on = bool(state.api_keys)
    protected = {"dependencies": [Depends(require_api_key)], "responses": UNAUTHORIZED} if keys_on else {}
    app.include_router(landmarks.router, **protected)
    app.include_router(batch.router, **protected)
    app.include_router(video.router, **protected)
    # The WebSocket checks keys itself: browsers cannot send them as headers (app.api.routes.stream).
    app.include_router(stream.router)
    app.include_router(meta.model_router, **protected)
    app.include_router(health.router)
    app.include_router(meta.router)
    install_page(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_upload_bytes,
        admission=state.admission,
        larger_bodies={"/landmarks/video": settings.max_video_bytes},
    )
    if settings.cors_origins:
        # Outermost, so that every answer (the middleware's own 413 and 503 too) carries the CORS
        # headers a browser needs to read it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-Faces",
                "X-Detection-Upsample",
                "Retry-After",
                "WWW-Authenticate",
            ],
            max_age=600,
        )
    return app


app = create_app()
