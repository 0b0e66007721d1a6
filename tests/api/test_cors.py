"""CORS: off by default; with LANDMARKS_CORS_ORIGINS, browsers on those origins may call the API (and read
its errors), preflight included, API keys or not."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.test_errors import assert_error
from tests.conftest import LFPW, make_client, wait_ready

ORIGIN = "https://app.example.com"
KEY = "browser-key-0d41"
FACE = LFPW / "image_0001.png"
LIMIT = 1_000_000


def preflight(client, origin: str = ORIGIN, path: str = "/landmarks/batch"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-api-key, x-request-id",
        },
    )


@pytest.fixture(scope="module")
def cors() -> Iterator[TestClient]:
    with make_client(
        cors_origins=[ORIGIN, "http://localhost:3000"], api_keys=[KEY], max_upload_bytes=LIMIT
    ) as c:
        wait_ready(c)
        yield c


def test_preflight_from_an_allowed_origin_needs_no_key(cors):
    response = preflight(cors)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in ("authorization", "content-type", "x-api-key", "x-request-id"))
    assert int(response.headers["access-control-max-age"]) > 0


def test_preflight_from_another_origin_is_refused(cors):
    response = preflight(cors, "https://evil.example.org")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_answers_and_errors_carry_the_headers_a_browser_needs_to_read_them(cors):
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"}
    ok = cors.post("/landmarks", headers=headers, files={"image": ("f.png", FACE.read_bytes())})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    unauthorized = cors.post("/landmarks", headers={"Origin": ORIGIN}, json={"image": ""})
    assert_error(unauthorized, 401, "unauthorized")
    assert unauthorized.headers["access-control-allow-origin"] == ORIGIN
    # Refused by the middleware itself, before any route.
    too_large = cors.post("/landmarks", headers=headers, json={"image": "A" * (2 * LIMIT)})
    assert_error(too_large, 413, "payload_too_large")
    assert too_large.headers["access-control-allow-origin"] == ORIGIN


def test_cors_is_off_by_default(client):
    assert (
        client.options(
            "/landmarks", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        ).status_code
        == 405
    )
    response = client.post(
        "/landmarks", headers={"Origin": ORIGIN}, files={"image": ("f.png", FACE.read_bytes())}
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
