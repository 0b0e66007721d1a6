"""The real service: uvicorn in its own process, over real HTTP on loopback."""

import httpx
import numpy as np

from tests.conftest import LFPW, PHOTOS


def test_live_server_returns_68_points_per_face(live_server):
    with open(LFPW / "image_0002.png", "rb") as handle:
        response = httpx.post(
            f"{live_server.url}/landmarks", files={"image": ("face.png", handle, "image/png")}, timeout=30
        )
    assert response.status_code == 200
    faces = response.json()["faces"]
    assert len(faces) == 1
    assert np.array(faces[0]["landmarks"]).shape == (68, 2)


def test_live_server_answers_concurrent_clients(live_server):
    data = (PHOTOS / "bald_guys.jpg").read_bytes()

    def one(client: httpx.Client) -> int:
        return len(client.post("/landmarks", files={"image": ("b.jpg", data, "image/jpeg")}).json()["faces"])

    from concurrent.futures import ThreadPoolExecutor

    with httpx.Client(base_url=live_server.url, timeout=60) as client, ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda _: one(client), range(8)))
    assert len(set(counts)) == 1 and counts[0] >= 20


def test_live_server_metrics_and_docs(live_server):
    assert httpx.get(f"{live_server.url}/openapi.json").status_code == 200
    text = httpx.get(f"{live_server.url}/metrics").text
    assert "landmarks_http_requests_total" in text
