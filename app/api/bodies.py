"""One way in for an image: a multipart file, base64 in JSON or an item of a batch all become an
:class:`ImageUpload`, whose ``read()`` gives the file's bytes. Routes never look at the content type.

The byte limit holds for the decoded images of a request together: base64 text is measured from its
length (whitespace and padding left out) and refused with 413 before any of it is decoded. The body
itself is bounded while it streams in, by the middleware, with :func:`json_body_limit` for JSON.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from app.api.errors import ApiError
from app.api.schemas import BatchJson, ImageJson
from app.config import Settings
from app.inference import InvalidImageError
from app.inference.imaging import SUPPORTED_FORMATS

FIELD = "image"
BATCH_FIELD = "images"
# Form parts beyond the files asked for: a few, so that "two files" is a 422 that says so, not a parser
# error; past them the form parser refuses the body (400 invalid_request).
EXTRA_FILES = 8
MAX_FIELDS = 32
# JSON framing around the base64 text (keys, ids, a data URL prefix, spaces): allowed on top of it.
JSON_OVERHEAD = 16 * 1024

_WHITESPACE = " \t\r\n"
# Standard alphabet from URL-safe, whitespace (line-wrapped base64) dropped.
_TO_STANDARD_BASE64 = str.maketrans("-_", "+/", _WHITESPACE)
_DATA_URL = re.compile(r"data:(?P<type>[^;,]*)(?:;[^;,]*)*;base64,", re.IGNORECASE)


def json_body_limit(max_upload_bytes: int) -> int:
    """Largest JSON body that can carry ``max_upload_bytes`` of images: base64 makes 4 characters of 3
    bytes, and escaped line breaks (``\\r\\n`` every 76 characters) add up to a sixteenth more."""
    return -(-max_upload_bytes // 3) * 4 * 17 // 16 + JSON_OVERHEAD


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    kind = media_type(content_type)
    return kind == "application/json" or kind.endswith("+json")


def base64_size(text: str) -> int:
    """Bytes that base64 ``text`` decodes to, counted without decoding it."""
    characters = len(text) - sum(text.count(c) for c in _WHITESPACE + "=")
    return characters * 3 // 4


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, with or without line breaks and padding."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        pass
    cleaned = text.translate(_TO_STANDARD_BASE64)
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError("the image is not valid base64 (nor a base64 data URL)") from exc


@dataclass(frozen=True)
class ImageUpload:
    """One image of a request: the file's bytes, or its base64 text (decoded by ``read``)."""

    payload: bytes | str
    content_type: str | None = None  # as declared by the multipart part or the data URL
    id: str | None = None

    @classmethod
    def from_base64(cls, text: str, id: str | None = None) -> "ImageUpload":
        match = _DATA_URL.match(text, 0, 512)
        if match is None:
            return cls(text, None, id)
        return cls(text[match.end() :], match.group("type") or None, id)

    @property
    def size(self) -> int:
        """Bytes of the file (for base64, once decoded)."""
        return len(self.payload) if isinstance(self.payload, bytes) else base64_size(self.payload)

    def read(self) -> bytes:
        """The file's bytes. Raises InvalidImageError for bad base64. Decoding is CPU work for a worker
        thread, not the event loop."""
        return self.payload if isinstance(self.payload, bytes) else decode_base64(self.payload)


def _too_many(count: int, most: int) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "loc": ("body", BATCH_FIELD),
                "msg": f"at most {most} images per request, got {count}",
                "type": "too_long",
            }
        ]
    )


async def _form_files(request: Request, field: str, max_files: int) -> list[UploadFile]:
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FIELDS)
    except (StarletteHTTPException, MultiPartException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", str(exc))
        raise ApiError(400, "invalid_request", f"the multipart body is malformed: {detail}") from exc
    values = form.getlist(field)
    if any(not isinstance(value, UploadFile) for value in values):
        raise ApiError(422, "validation_error", f"the field '{field}' must hold files, not text")
    return values  # type: ignore[return-value]


async def _json_body(request: Request, model: type[BaseModel]) -> Any:
    body = await request.body()  # bounded by the middleware while it streams in
    try:
        return await to_thread.run_sync(model.model_validate_json, body)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise RequestValidationError(errors) from None


def _unsupported(field: str) -> ApiError:
    return ApiError(
        415,
        "unsupported_media_type",
        f"send the photo as multipart/form-data in the field '{field}', or as application/json with "
        f"base64 in '{field}'",
    )


def _check_size(uploads: list[ImageUpload], settings: Settings) -> list[ImageUpload]:
    if sum(upload.size for upload in uploads) > settings.max_upload_bytes:
        raise ApiError(
            413, "payload_too_large", f"the upload exceeds the limit of {settings.max_upload_bytes} bytes"
        )
    return uploads


async def _from_files(files: list[UploadFile]) -> list[ImageUpload]:
    """The files' bytes, each file closed once read: the form parser's spooled copy would otherwise stay
    until the response, doubling what a request holds while it waits in the admission queue."""
    uploads = []
    for file in files:
        uploads.append(ImageUpload(await file.read(), file.content_type, file.filename or None))
        await file.close()
    return uploads


async def read_image(request: Request, settings: Settings) -> ImageUpload:
    """The one image of a single-image route: the file in the form field ``image``, or
    ``{"image": "<base64>"}``."""
    content_type = request.headers.get("content-type")
    if is_json(content_type):
        parsed: ImageJson = await _json_body(request, ImageJson)
        uploads = [ImageUpload.from_base64(parsed.image)]
    elif media_type(content_type) == "multipart/form-data":
        files = await _form_files(request, FIELD, EXTRA_FILES)
        if not files:
            raise ApiError(422, "validation_error", f"the form field '{FIELD}' (a file) is required")
        if len(files) > 1:
            raise ApiError(422, "validation_error", f"send exactly one file in the field '{FIELD}'")
        uploads = await _from_files(files)
    else:
        raise _unsupported(FIELD)
    return _check_size(uploads, settings)[0]


async def read_batch(request: Request, settings: Settings) -> list[ImageUpload]:
    """The images of a batch, in request order: the files in the form field ``images``, or
    ``{"images": [{"id": "...", "image": "<base64>"}, ...]}``. 1 to ``settings.max_batch`` of them."""
    content_type = request.headers.get("content-type")
    most = settings.max_batch
    if is_json(content_type):
        parsed: BatchJson = await _json_body(request, BatchJson)
        uploads = [ImageUpload.from_base64(item.image, item.id) for item in parsed.images]
    elif media_type(content_type) == "multipart/form-data":
        files = await _form_files(request, BATCH_FIELD, most + EXTRA_FILES)
        if not files:
            raise ApiError(
                422, "validation_error", f"the form field '{BATCH_FIELD}' (one or more files) is required"
            )
        uploads = await _from_files(files)
    else:
        raise _unsupported(BATCH_FIELD)
    if len(uploads) > most:
        raise _too_many(len(uploads), most)
    return _check_size(uploads, settings)


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` written in place (OpenAPI has no ``$defs``)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def _request_body(form_schema: dict[str, Any], json_model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form_schema},
                "application/json": {"schema": _inline_refs(json_model.model_json_schema())},
            },
        }
    }


_FILE = {"type": "string", "format": "binary", "description": f"A photo: {', '.join(SUPPORTED_FORMATS)}."}

# The two request bodies of the single-image routes and of the batch, for OpenAPI (``openapi_extra``).
IMAGE_BODY = _request_body({"type": "object", "required": [FIELD], "properties": {FIELD: _FILE}}, ImageJson)
BATCH_BODY = _request_body(
    {
        "type": "object",
        "required": [BATCH_FIELD],
        "properties": {
            BATCH_FIELD: {
                "type": "array",
                "items": _FILE,
                "minItems": 1,
                "description": "The photos, at most LANDMARKS_MAX_BATCH (16 by default).",
            }
        },
    },
    BatchJson,
)
