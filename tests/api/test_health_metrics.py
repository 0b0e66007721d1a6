"""Health before and after the model is loaded, /model, /metrics counting, /docs."""

import asyncio
import re
from types import SimpleNamespace

from fastapi.testclient import TestClient

from app.api.state import service_state
from app.main import _warm_up, create_app
from tests.conftest import PHOTOS, make_client, wait_ready


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_not_ready_before_the_model_is_loaded_but_live():
    # Without entering the lifespan the model is never loaded.
    client = TestClient(create_app())
    assert client.get("/health/live").status_code == 200
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    with open(PHOTOS / "dogs.jpg", "rb") as handle:
        refused = client.post("/landmarks", files={"image": ("d.jpg", handle, "image/jpeg")})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "not_ready"


def test_ready_after_load_and_warm_up():
    with make_client() as client:
        wait_ready(client)
        assert client.get("/health/ready").json() == {"status": "ready", "reason": None}
        assert client.get("/health/live").json()["status"] == "ok"


def test_a_warm_up_that_ends_after_sigterm_leaves_the_worker_not_ready():
    # The warm-up thread cannot be stopped; once shutdown has begun its end must not turn the worker
    # ready (it did: the log said "ready" after "shutting down").
    state = service_state(create_app())
    warmed = []
    predictor = SimpleNamespace(warm_up=lambda: warmed.append(True))
    state.shutting_down = True
    asyncio.run(_warm_up(state, predictor))
    assert warmed == [True] and state.ready is False
    state.shutting_down = False
    asyncio.run(_warm_up(state, predictor))
    assert state.ready is True and state.not_ready_reason is None


def test_a_second_lifespan_on_the_same_app_becomes_ready_again():
    # The shutdown of the first must not carry over (schemathesis runs a lifespan per operation).
    app = create_app()
    for _ in range(2):
        with TestClient(app) as client:
            wait_ready(client, timeout=60)


def test_model_metadata_describes_the_checkpoint(client):
    info = client.get("/model").json()
    assert info["arch"] == "onet"
    assert info["input_size"] == 62
    assert info["num_points"] == 68
    assert len(info["mean"]) == len(info["std"]) == 3
    assert info["name"] and info["version"]
    # The shipped model is a cascade serving the 300-W convention with an error estimate.
    assert [stage["crop"] for stage in info["stages"]] == ["box", "landmarks"]
    assert info["served_head"] == "300w" and info["stages"][-1]["heads"][0] == "300w"
    assert info["stages"][-1]["error_head"] is True
    # Faces the model is least sure of are averaged with their mirror image, at the checkpoint's threshold.
    assert info["flip_test_time"] is False
    assert info["hard_face_flip"] == info["metadata"]["hard_face_flip"]["estimate_above"] > 0


def test_metrics_count_requests_faces_and_rejections(client):
    before = client.get("/metrics").text
    with open(PHOTOS / "bald_guys.jpg", "rb") as handle:
        faces = len(
            client.post("/landmarks", files={"image": ("b.jpg", handle, "image/jpeg")}).json()["faces"]
        )
    client.post("/landmarks", files={"image": ("x.jpg", b"garbage", "image/jpeg")})
    after = client.get("/metrics").text
    ok = 'method="POST",route="/landmarks",status="200"'
    bad = 'method="POST",route="/landmarks",status="400"'
    assert (
        metric(after, "landmarks_http_requests_total", ok)
        == metric(before, "landmarks_http_requests_total", ok) + 1
    )
    assert (
        metric(after, "landmarks_http_requests_total", bad)
        == metric(before, "landmarks_http_requests_total", bad) + 1
    )
    assert (
        metric(after, "landmarks_faces_detected_total")
        == metric(before, "landmarks_faces_detected_total") + faces
    )
    rejected = 'reason="invalid_image"'
    assert (
        metric(after, "landmarks_images_rejected_total", rejected)
        == metric(before, "landmarks_images_rejected_total", rejected) + 1
    )
    assert metric(after, "landmarks_http_request_duration_seconds_count", 'route="/landmarks"') > 0


def test_openapi_documents_the_contract(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/landmarks"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"400", "413", "415", "422"} <= set(post["responses"])
    assert client.get("/docs").status_code == 200
