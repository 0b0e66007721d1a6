"""Base64 JSON bodies on the single-image routes: the same answer as the multipart file."""

import base64

import pytest

from app.api.bodies import base64_size, decode_base64
from app.inference import InvalidImageError
from tests.api.test_errors import assert_error
from tests.conftest import LFPW, PHOTOS, make_client, wait_ready

FACE = LFPW / "image_0001.png"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("path", [FACE, PHOTOS / "bald_guys.jpg", PHOTOS / "dogs.jpg"])
def test_json_answer_is_exactly_the_multipart_answer(client, path):
    data = path.read_bytes()
    multipart = client.post("/landmarks", files={"image": (path.name, data, "image/jpeg")})
    as_json = client.post("/landmarks", json={"image": b64(data)})
    as_data_url = client.post("/landmarks", json={"image": "data:image/jpeg;base64," + b64(data)})
    assert multipart.status_code == as_json.status_code == as_data_url.status_code == 200
    assert as_json.content == multipart.content == as_data_url.content
    assert as_json.headers["content-type"] == multipart.headers["content-type"]


def test_json_query_parameters_apply(client):
    data = (PHOTOS / "bald_guys.jpg").read_bytes()
    limited = client.post("/landmarks", params={"max_faces": 2}, json={"image": b64(data)}).json()
    assert len(limited["faces"]) == 2


def test_render_takes_json_too(client):
    data = FACE.read_bytes()
    multipart = client.post("/landmarks/render", params={"format": "png"}, files={"image": ("f", data)})
    as_json = client.post("/landmarks/render", params={"format": "png"}, json={"image": b64(data)})
    assert as_json.status_code == 200 and as_json.headers["x-faces"] == "1"
    assert as_json.content == multipart.content


@pytest.mark.parametrize(
    "body, where",
    [
        ({}, ["body", "image"]),
        ({"image": None}, ["body", "image"]),
        ({"image": 5}, ["body", "image"]),
        ({"image": ["aGk="]}, ["body", "image"]),
        ({"image": "aGk=", "extra": True}, ["body", "extra"]),
    ],
)
def test_json_field_problems_are_422_with_details(client, body, where):
    error = assert_error(client.post("/landmarks", json=body), 422, "validation_error")
    assert [d["loc"] for d in error["details"]] == [where]


def test_malformed_json_is_422_with_details(client):
    response = client.post("/landmarks", content=b'{"image": ', headers={"content-type": "application/json"})
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["type"] == "json_invalid"


def test_bad_base64_is_invalid_image(client):
    assert_error(client.post("/landmarks", json={"image": "&&&&"}), 400, "invalid_image")
    assert_error(client.post("/landmarks", json={"image": "data:image/png,%89PNG"}), 400, "invalid_image")


def test_base64_too_long_is_refused_before_decoding():
    with make_client(max_upload_bytes=30_000) as small:
        wait_ready(small)
        # 40 004 valid-looking characters (30 003 bytes) and one that is no base64: decoding would give 400.
        assert_error(small.post("/landmarks", json={"image": "A" * 40_004 + "*"}), 413, "payload_too_large")
        # Exactly at the limit it is decoded (and found to be no image).
        assert_error(small.post("/landmarks", json={"image": "A" * 40_000}), 400, "invalid_image")


def test_json_body_far_over_the_limit_is_413_from_its_length():
    with make_client(max_upload_bytes=30_000) as small:
        wait_ready(small)
        response = small.post("/landmarks", json={"image": "A" * 200_000})
        assert_error(response, 413, "payload_too_large")
        assert response.headers["connection"] == "close"


def test_other_content_types_are_415_naming_both_bodies(client):
    response = client.post("/landmarks", content=b"x", headers={"content-type": "text/plain"})
    error = assert_error(response, 415, "unsupported_media_type")
    assert "multipart/form-data" in error["message"] and "application/json" in error["message"]


def test_base64_variants_decode_to_the_same_bytes():
    data = bytes(range(256)) * 3 + b"\xfb\xff"
    standard = base64.b64encode(data).decode()
    for text in (
        standard,
        "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76)),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        " " + standard + "\r\n",
    ):
        assert base64_size(text) == len(data)
        assert decode_base64(text) == data
    for bad in ("a", "abcde", "ab$d", "é" * 4):
        with pytest.raises(InvalidImageError):
            decode_base64(bad)


def test_openapi_documents_both_bodies(client):
    spec = client.get("/openapi.json").json()
    for path in ("/landmarks", "/landmarks/render", "/landmarks/batch"):
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"multipart/form-data", "application/json"}
        assert content["application/json"]["schema"]["additionalProperties"] is False
