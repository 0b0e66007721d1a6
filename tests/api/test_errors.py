"""Every documented error: status, JSON body with a code, a message and the request id."""

import io
import struct
import zlib

import pytest
from PIL import Image

from tests.conftest import LFPW, make_client, wait_ready


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk announcing a huge image, with a tiny (bogus) IDAT after it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def face_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.open(LFPW / "image_0001.png").convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


def upload(client, data: bytes, content_type: str = "image/jpeg", params=None):
    return client.post("/landmarks", params=params, files={"image": ("upload", data, content_type)})


def test_random_bytes_are_invalid_image(client):
    assert_error(upload(client, bytes(range(256)) * 20), 400, "invalid_image")


def test_empty_file_is_invalid_image(client):
    assert_error(upload(client, b""), 400, "invalid_image")


def test_truncated_jpeg_is_invalid_image(client):
    data = face_jpeg()
    assert_error(upload(client, data[: len(data) // 3]), 400, "invalid_image")


def test_text_declared_as_text_is_unsupported_media_type(client):
    assert_error(upload(client, b"hello, world", "text/plain"), 415, "unsupported_media_type")


def test_recognised_non_image_format_is_unsupported_media_type(client):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="ICO")
    assert_error(upload(client, buffer.getvalue(), "image/x-icon"), 415, "unsupported_media_type")


def test_non_multipart_body_is_unsupported_media_type(client):
    response = client.post("/landmarks", content=face_jpeg(), headers={"content-type": "image/jpeg"})
    assert_error(response, 415, "unsupported_media_type")


def test_header_announcing_too_many_pixels_is_rejected_before_decoding(client):
    assert_error(upload(client, png_header_claiming(30000, 30000), "image/png"), 413, "too_many_pixels")


def test_missing_field_is_422(client):
    response = client.post("/landmarks", files={"photo": ("x.jpg", face_jpeg(), "image/jpeg")})
    assert_error(response, 422, "validation_error")


def test_text_instead_of_file_is_422(client):
    response = client.post("/landmarks", data={"image": "not a file"}, files={"other": ("x", b"x")})
    assert_error(response, 422, "validation_error")


def test_two_files_are_422(client):
    data = face_jpeg()
    files = [("image", ("a.jpg", data, "image/jpeg")), ("image", ("b.jpg", data, "image/jpeg"))]
    assert_error(client.post("/landmarks", files=files), 422, "validation_error")


@pytest.mark.parametrize(
    "params",
    [
        {"upsample": 3},
        {"upsample": -1},
        {"upsample": "x"},
        {"upsample": "AUTO"},
        {"max_faces": 0},
        {"max_faces": 10**6},
    ],
)
def test_out_of_range_parameters_are_422(client, params):
    error = assert_error(upload(client, face_jpeg(), params=params), 422, "validation_error")
    assert error["details"]


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_upload_over_the_byte_limit_is_413():
    with make_client(max_upload_bytes=100_000) as small:
        wait_ready(small)
        data = face_jpeg() + b"\0" * 200_000
        assert_error(upload(small, data), 413, "payload_too_large")
        # The next request is served normally.
        assert upload(small, face_jpeg()).status_code == 200


def test_incoming_request_id_is_echoed(client):
    response = client.get("/health/live", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
