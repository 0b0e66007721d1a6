"""WebSocket /landmarks/stream: live frames in, tracked faces out, one answer per frame.

The client sends each frame as a binary message (JPEG or PNG); the server answers each, in order, with
one text message: ``{"frame": i, "time": s, "faces": [...]}`` (the faces of ``POST /landmarks/video``,
with ``track_id``), ``{"frame": i, "dropped": true}`` when a newer frame arrived before this one could
start (latency stays bounded: at most one frame waits), or ``{"frame": i, "error": {...}}`` for a frame
that is no image. ``i`` counts the client's messages from 0; ``time`` is seconds since the first frame
arrived. The tracks live in one :class:`FaceTracker` per connection.

API keys: browsers cannot set headers on a WebSocket, so the key may come as the query parameter
``api_key``, as a subprotocol ``api-key.<KEY>`` (offered next to ``landmarks``), or, for other clients,
in ``X-API-Key`` / ``Authorization: Bearer``. Close codes: 1000 normal; 1003 a text message was sent
where frames are binary; 1008 no or a wrong API key; 1009 a frame larger than LANDMARKS_MAX_UPLOAD_BYTES;
1011 an error inside the service; 1012 the worker restarts (uvicorn, at shutdown); 1013 the worker is
shutting down or overloaded: reconnect later.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from app.api import metrics
from app.api.admission import AdmissionQueue, AdmissionRefused
from app.api.budget import announced_pixels
from app.api.state import service_state
from app.config import Settings, UpsamplePolicy, build_tracker_options
from app.inference import InferenceError
from app.inference.pipeline import PhotoPipeline, Upload
from app.inference.tracking import FaceTracker

logger = logging.getLogger("app.stream")

router = APIRouter(prefix="/landmarks", tags=["video"])

SUBPROTOCOL = "landmarks"
KEY_PREFIX = "api-key."

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


def presented_keys(websocket: WebSocket, api_key: str | None) -> list[str]:
    """Every API key the client presented, wherever it put it."""
    keys = [api_key] if api_key else []
    keys += [
        p[len(KEY_PREFIX) :] for p in websocket.scope.get("subprotocols", []) if p.startswith(KEY_PREFIX)
    ]
    if header := websocket.headers.get("x-api-key"):
        keys.append(header)
    authorization = websocket.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        keys.append(authorization[7:].strip())
    return [key for key in keys if key]


def chosen_subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to accept: ``landmarks`` when offered, else the key's own (a browser that offered
    subprotocols fails the connection unless one of them is accepted)."""
    offered = websocket.scope.get("subprotocols", [])
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return next((p for p in offered if p.startswith(KEY_PREFIX)), None)


@dataclass
class _Frame:
    index: int
    data: bytes
    arrived: float


class StreamSession:
    """One connection: a receiver keeps only the newest waiting frame, a worker answers frames in turn."""

    def __init__(
        self,
        websocket: WebSocket,
        pipeline: PhotoPipeline,
        settings: Settings,
        admission: AdmissionQueue,
        tracker: FaceTracker,
        policy: UpsamplePolicy,
    ) -> None:
        self.websocket, self.pipeline, self.settings = websocket, pipeline, settings
        self.admission, self.tracker, self.policy = admission, tracker, policy
        self.waiting: _Frame | None = None
        self.ready = asyncio.Event()
        self.closed = False
        self.close_code = 1000
        self.close_reason = ""
        self.started: float | None = None
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        """Send an answer; a client that has gone away ends the session quietly."""
        async with self.send_lock:
            if self.websocket.application_state != WebSocketState.CONNECTED:
                return
            try:
                await self.websocket.send_json(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.finish(1000, "")

    async def receive(self) -> None:
        index = 0
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                self.finish(CLOSE_UNSUPPORTED_DATA, "send frames as binary messages (JPEG or PNG)")
                return
            if len(data) > self.settings.max_upload_bytes:
                self.finish(
                    CLOSE_TOO_BIG, f"a frame exceeds the limit of {self.settings.max_upload_bytes} bytes"
                )
                return
            now = time.monotonic()
            if self.started is None:
                self.started = now
            stale, self.waiting = self.waiting, _Frame(index, data, now)
            index += 1
            if stale is not None:
                metrics.FRAMES.labels(source="stream", outcome="dropped").inc()
                await self.send({"frame": stale.index, "dropped": True})
            self.ready.set()

    def finish(self, code: int, reason: str) -> None:
        self.closed, self.close_code, self.close_reason = True, code, reason
        self.ready.set()

    async def work(self) -> None:
        budget = service_state(self.websocket.app).pixel_budget
        assert budget is not None, "the lifespan makes the budget before serving"
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.closed:
                return
            frame, self.waiting = self.waiting, None
            if frame is None:
                continue
            try:
                async with self.admission.slot():
                    # The frame holds its pixels in the worker's budget, as a photo does: large frames
                    # from several connections take turns instead of decoding side by side.
                    weight = await to_thread.run_sync(announced_pixels, frame.data, self.settings.max_pixels)
                    async with budget.hold(weight):
                        answer = await to_thread.run_sync(self.process, frame)
            except AdmissionRefused as exc:
                if exc.reason == "shutting_down":
                    self.finish(CLOSE_TRY_AGAIN_LATER, "the server is shutting down: reconnect")
                    return
                answer = {"frame": frame.index, "dropped": True, "reason": exc.reason}
            await self.send(answer)

    def process(self, frame: _Frame) -> dict[str, Any]:
        """One frame's answer (runs in a worker thread)."""
        assert self.started is not None
        seconds = round(frame.arrived - self.started, 4)
        try:
            image, _ = self.pipeline.decode(Upload(frame.data), self.policy)
        except InferenceError as exc:
            return {
                "frame": frame.index,
                "time": seconds,
                "error": {"code": exc.code, "message": exc.message},
            }
        faces = self.tracker.update(image, frame.arrived - self.started)
        metrics.FRAMES.labels(source="stream", outcome="processed").inc()
        return {"frame": frame.index, "time": seconds, "faces": [face.to_dict() for face in faces]}


@router.websocket("/stream")
async def stream(
    websocket: WebSocket,
    api_key: Annotated[str | None, Query(description="An API key (when keys are on).")] = None,
    smoothing: Annotated[bool, Query()] = True,
    upsample: Annotated[UpsamplePolicy | None, Query()] = None,
) -> None:
    state = service_state(websocket.app)
    settings = state.settings
    keys = state.api_keys
    await websocket.accept(subprotocol=chosen_subprotocol(websocket))
    if keys and not any(keys.accepts(key) for key in presented_keys(websocket, api_key)):
        await websocket.close(
            CLOSE_POLICY_VIOLATION, "a valid API key is required (api_key or api-key.<KEY>)"
        )
        return
    pipeline = state.pipeline
    if pipeline is None or not state.ready:
        await websocket.close(CLOSE_TRY_AGAIN_LATER, "the model is still loading: reconnect")
        return
    options = build_tracker_options(settings, smoothing=smoothing, upsample=upsample)
    session = StreamSession(
        websocket,
        pipeline,
        settings,
        state.admission,
        FaceTracker(pipeline.predictor, options),
        options.upsample,
    )
    metrics.STREAMS.labels(source="stream").inc()
    receiver = asyncio.create_task(session.receive())
    worker = asyncio.create_task(session.work())
    try:
        done, _ = await asyncio.wait({receiver, worker}, return_when=asyncio.FIRST_COMPLETED)
        failed = [task for task in done if not task.cancelled() and task.exception() is not None]
        failed = [task for task in failed if not isinstance(task.exception(), WebSocketDisconnect)]
        if failed:
            logger.error("stream failed", exc_info=failed[0].exception())
            session.finish(CLOSE_INTERNAL_ERROR, "the stream failed inside the service")
        else:
            session.finish(session.close_code, session.close_reason)
            if worker not in done:
                await asyncio.wait({worker}, timeout=30)
    finally:
        for task in (receiver, worker):
            task.cancel()
        metrics.STREAMS.labels(source="stream").dec()
    if websocket.application_state == WebSocketState.CONNECTED and session.close_code != 1000:
        await websocket.close(session.close_code, session.close_reason)
