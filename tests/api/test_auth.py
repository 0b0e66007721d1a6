"""API keys: off by default; when set, every /landmarks* route and /model need one, health, metrics and
the docs stay open."""

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.auth import ApiKeys, key_id
from app.config import Settings
from app.main import create_app
from tests.api.test_errors import assert_error
from tests.conftest import DATA, LFPW, SHIPPED_MODEL, LiveServer, make_client, wait_ready
from tests.robustness.live import read_response

KEYS = ["first-key-5f0c2a", "second-key-91be77"]
FACE = LFPW / "image_0001.png"
CLIP = DATA / "video" / "interview_turns.mp4"
OPEN_PATHS = ["/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json"]


@pytest.fixture(scope="module")
def keyed() -> Iterator[TestClient]:
    with make_client(api_keys=KEYS) as client:
        wait_ready(client)
        yield client


def post_face(client, path: str = "/landmarks", headers: dict | None = None):
    if path.endswith("/video"):  # the video route takes a clip: its first frame is enough
        files = {"video": (CLIP.name, CLIP.read_bytes(), "video/mp4")}
        return client.post(path, headers=headers, params={"max_frames": 1}, files=files)
    field = "images" if path.endswith("/batch") else "image"
    return client.post(path, headers=headers, files={field: ("f.png", FACE.read_bytes(), "image/png")})


def landmark_operations(client) -> list[str]:
    """Every /landmarks* path of the API, as OpenAPI lists it (a new route is covered as it appears)."""
    paths = [path for path in client.get("/openapi.json").json()["paths"] if path.startswith("/landmarks")]
    assert len(paths) >= 3
    return paths


def test_without_a_key_every_landmarks_route_is_401_with_www_authenticate(keyed):
    for path in landmark_operations(keyed):
        response = post_face(keyed, path)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        wrong = post_face(keyed, path, {"Authorization": "Bearer not-a-key"})
        assert_error(wrong, 401, "unauthorized")
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        assert_error(post_face(keyed, path, {"X-API-Key": KEYS[0][:-1]}), 401, "unauthorized")
        assert_error(post_face(keyed, path, {"Authorization": f"Basic {KEYS[0]}"}), 401, "unauthorized")


def test_either_header_with_any_key_is_let_through(keyed):
    for path in landmark_operations(keyed):
        for headers in ({"Authorization": f"Bearer {KEYS[0]}"}, {"X-API-Key": KEYS[1]}):
            assert post_face(keyed, path, headers).status_code == 200, path
    both = {"Authorization": "Bearer wrong", "X-API-Key": KEYS[0]}
    assert post_face(keyed, "/landmarks", both).status_code == 200


def test_the_key_is_checked_before_the_body_is_read(keyed):
    # A malformed body and an empty JSON object: without a key the answer is 401, not 400 or 422.
    garbage = keyed.post(
        "/landmarks", content=b"\x00garbage", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert_error(garbage, 401, "unauthorized")
    assert_error(keyed.post("/landmarks/batch", json={}), 401, "unauthorized")


def test_model_needs_a_key_health_metrics_and_docs_do_not(keyed):
    assert_error(keyed.get("/model"), 401, "unauthorized")
    assert keyed.get("/model", headers={"X-API-Key": KEYS[0]}).json()["num_points"] == 68
    for path in OPEN_PATHS:
        assert keyed.get(path).status_code == 200, path


def test_openapi_declares_the_schemes_on_the_protected_operations_only(keyed, client):
    spec = keyed.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            protected = path.startswith("/landmarks") or path == "/model"
            assert (operation.get("security") == [{"bearer": []}, {"apiKey": []}]) == protected, path
            assert ("401" in operation["responses"]) == protected, path
    # Keys off (the default): nothing is declared and nothing needs a key.
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})
    assert post_face(client).status_code == 200


def test_keys_are_compared_whole():
    keys = ApiKeys(KEYS)
    assert keys and len(keys) == 2
    assert keys.accepts(KEYS[1])
    assert not keys.accepts(KEYS[1] + " ") and not keys.accepts("") and not keys.accepts(KEYS[0].upper())
    assert not ApiKeys([])


def test_a_keys_file_that_is_missing_or_empty_stops_start_up(tmp_path):
    with pytest.raises(RuntimeError, match="cannot read"):
        create_app(Settings(model_path=SHIPPED_MODEL, api_keys_file=tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("\n# no key yet\n\n")
    with pytest.raises(RuntimeError, match="holds no key"):
        create_app(Settings(model_path=SHIPPED_MODEL, api_keys_file=empty))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> Iterator[LiveServer]:
    secret = tmp_path_factory.mktemp("secret") / "keys"
    secret.write_text(f"# mounted secret\n{KEYS[1]}\n\n")
    server = LiveServer(env={"LANDMARKS_API_KEYS": KEYS[0], "LANDMARKS_API_KEYS_FILE": str(secret)})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_live_401_comes_before_the_body_is_sent(keyed_server):
    # The headers announce 5 MB that never come: the answer cannot wait for them.
    with socket.create_connection(("127.0.0.1", keyed_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /landmarks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n"
        )
        status, headers, body = read_response(sock, timeout=10)
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert json.loads(body)["error"]["code"] == "unauthorized"


@pytest.mark.slow
def test_live_keys_from_the_environment_and_the_file_and_the_log_names_them_by_hash(keyed_server):
    url = f"{keyed_server.url}/landmarks"
    data = FACE.read_bytes()
    for number, key in enumerate([*KEYS, "not-a-key"]):
        headers = {"X-API-Key": key, "X-Request-ID": f"auth-log-{number}"}
        response = httpx.post(url, headers=headers, files={"image": ("f.png", data)}, timeout=30)
        assert response.status_code == (200 if key in KEYS else 401)
    keyed_server.stop()
    output = keyed_server.output
    assert all(key not in output for key in KEYS)
    logged = {
        entry["request_id"]: entry.get("api_key")
        for entry in map(json.loads, output.splitlines())
        if entry.get("message") == "request"
    }
    assert [logged[f"auth-log-{number}"] for number in range(3)] == [key_id(KEYS[0]), key_id(KEYS[1]), None]
