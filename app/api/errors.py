"""Every error leaves the service as ``{"error": {"code", "message", "request_id"}}``; this module is
the one place where domain errors become HTTP statuses."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import metrics
from app.api.admission import AdmissionRefused
from app.inference.errors import (
    InferenceError,
    InvalidImageError,
    InvalidVideoError,
    TooManyFramesError,
    TooManyPixelsError,
    UnsupportedMediaTypeError,
)
from app.logging_setup import request_id_var

logger = logging.getLogger("app.errors")

STATUS_BY_ERROR: dict[type[InferenceError], int] = {
    InvalidImageError: 400,
    InvalidVideoError: 400,
    TooManyFramesError: 413,
    TooManyPixelsError: 413,
    UnsupportedMediaTypeError: 415,
}

CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


class ApiError(Exception):
    """An error raised by the web layer itself (bad form, overload, not ready)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id_var.get()}
    body.update({k: v for k, v in extra.items() if v is not None})
    return {"error": body}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def admission_refused_response(exc: AdmissionRefused) -> JSONResponse:
    """503 for a request the admission queue refused: ``overloaded`` (queue full or waited too long, the
    ``reason`` says which) or ``shutting_down``, with the queue's Retry-After."""
    code = "shutting_down" if exc.reason == "shutting_down" else "overloaded"
    headers = {"Retry-After": str(exc.retry_after)}
    return error_response(503, code, exc.message, headers=headers, reason=exc.reason)


def _json_safe(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]


def _inference_status(exc: InferenceError) -> int:
    status = STATUS_BY_ERROR.get(type(exc), 500)
    if status < 500:
        metrics.REJECTED.labels(reason=exc.code).inc()
    return status


def item_error(exc: InferenceError) -> dict[str, Any]:
    """The error object of one image of a batch: the code, message and status that the single-image
    route would have answered for it."""
    return {"code": exc.code, "message": exc.message, "status": _inference_status(exc)}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferenceError)
    async def _inference_error(_: Request, exc: InferenceError) -> JSONResponse:
        status = _inference_status(exc)
        return error_response(status, exc.code, exc.message)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        if exc.status in (400, 401, 413, 415, 422):
            metrics.REJECTED.labels(reason=exc.code).inc()
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(AdmissionRefused)
    async def _admission_refused(_: Request, exc: AdmissionRefused) -> JSONResponse:
        return admission_refused_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.REJECTED.labels(reason="validation_error").inc()
        errors = _json_safe(list(exc.errors()))
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(422, "validation_error", message, details=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODE_BY_STATUS.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
