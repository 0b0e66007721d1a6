"""One pure-ASGI middleware for what every request needs before any route runs: a request id, the
upload byte limit (enforced while the body streams in, never by buffering it), an early 503 when the
worker's admission queue is already full, metrics, one JSON log line per request, and a JSON 500 for
anything unexpected.

The landmark routes take their admission slot (``app.api.admission``) once the body has fully arrived,
not while it is still uploading: a few clients that open uploads and then stall must not hold the slots
or the queue. A request that arrives while the queue is full is answered at once, without reading the
upload.
"""

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect

from app.api import metrics
from app.api.admission import AdmissionQueue, AdmissionRefused
from app.api.bodies import is_json, json_body_limit
from app.api.errors import admission_refused_response, error_body
from app.logging_setup import request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("app.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Multipart framing around the file (boundaries, part headers): allowed on top of the file limit.
MULTIPART_OVERHEAD = 16 * 1024
# A body announced as too large is read and discarded up to this many bytes before answering, so
# ordinary clients that send before they read still see the 413; past it the connection is closed.
DRAIN_LIMIT = 64 * 1024 * 1024


# Logged for a client that went away before its answer (nginx's convention); never sent.
CLIENT_CLOSED_REQUEST = 499


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        admission: AdmissionQueue,
        limited_prefix: str = "/landmarks",
        larger_bodies: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes + MULTIPART_OVERHEAD
        self.max_json_body_bytes = json_body_limit(max_body_bytes)  # base64 is a third larger
        self.max_upload_bytes = max_body_bytes
        self.admission = admission
        self.limited_prefix = limited_prefix
        # Paths with a body limit of their own (the video route), multipart only.
        self.larger_limits = dict(larger_bodies or {})
        self.larger_bodies = {path: limit + MULTIPART_OVERHEAD for path, limit in self.larger_limits.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming_id = headers.get("x-request-id", "")
        request_id = incoming_id if _VALID_REQUEST_ID.match(incoming_id) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        state = {
            "status": 0,
            "response_started": False,
            "body_bytes": 0,
            "too_large": False,
        }
        limited = scope["method"] == "POST" and scope["path"].startswith(self.limited_prefix)
        max_body = self.max_json_body_bytes if is_json(headers.get("content-type")) else self.max_body_bytes
        max_body = self.larger_bodies.get(scope["path"], max_body)
        upload_limit = self.larger_limits.get(scope["path"], self.max_upload_bytes)

        async def send_with_id(message: Message) -> None:
            if state["too_large"]:
                return  # whatever the app answers, the client gets our 413
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["response_started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["body_bytes"] += len(message.get("body", b""))
                if state["body_bytes"] > max_body:
                    state["too_large"] = True
                    raise _BodyTooLarge
            return message

        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_body:
                if headers.get("expect", "").lower() != "100-continue":
                    await self._drain(receive, int(declared))
                state["too_large"] = True
                await self._payload_too_large(send, upload_limit)
            elif limited and (refusal := self._refusal_on_arrival()):
                # The queue is already full: answer at once, without reading the upload.
                await admission_refused_response(refusal)(scope, receive, send_with_id)
            else:
                await self.app(scope, counting_receive, send_with_id)
                if state["too_large"]:
                    await self._payload_too_large(send, upload_limit)
        except ClientDisconnect:
            # The client went away mid-upload: there is no one to answer, and it is no server error.
            state["status"] = CLIENT_CLOSED_REQUEST
        except Exception:  # _BodyTooLarge included: it surfaces through body parsing
            if state["too_large"]:
                await self._payload_too_large(send, upload_limit)
            else:
                logger.exception("unhandled error", extra={"path": scope["path"]})
                if not state["response_started"]:
                    state["status"] = 500
                    await self._send_json(
                        send,
                        500,
                        error_body("internal_error", "the request failed inside the service"),
                    )
        finally:
            self._record(scope, state, time.perf_counter() - started, request_id)
            request_id_var.reset(token)

    async def _payload_too_large(self, send: Send, limit: int) -> None:
        """Answer 413 on the raw ``send`` (the app's own answer, if any, was dropped)."""
        metrics.REJECTED.labels(reason="payload_too_large").inc()
        body = error_body("payload_too_large", f"the upload exceeds the limit of {limit} bytes")
        await self._send_json(send, 413, body, [(b"connection", b"close")])

    def _refusal_on_arrival(self) -> AdmissionRefused | None:
        try:
            self.admission.check_room()
        except AdmissionRefused as refusal:
            return refusal
        return None

    @staticmethod
    async def _drain(receive: Receive, declared: int) -> None:
        """Read and discard a too-large body (bounded), so the client is not reset mid-send."""
        remaining = min(declared, DRAIN_LIMIT)
        while remaining > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            remaining -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _send_json(
        self,
        send: Send,
        status: int,
        body: dict[str, Any],
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *(extra_headers or []),
        ]
        headers.append((b"x-request-id", (request_id_var.get() or "").encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _record(self, scope: Scope, state: dict[str, Any], elapsed: float, request_id: str) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        status = 413 if state["too_large"] else (state["status"] or 500)
        metrics.REQUESTS.labels(route=route_path, method=scope["method"], status=str(status)).inc()
        metrics.LATENCY.labels(route=route_path).observe(elapsed)
        logger.info(
            "request",
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "route": route_path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "bytes_in": state["body_bytes"],
                # Set by the API-key check: a short hash that names the key, never the key.
                "api_key": scope.get("state", {}).get("api_key_id"),
            },
        )
