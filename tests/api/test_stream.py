"""WebSocket /landmarks/stream in-process: one answer per frame with tracks, stale frames dropped, keys
from the query or a subprotocol, and the documented close codes."""

import cv2
import pytest
from starlette.websockets import WebSocketDisconnect

from tests.conftest import make_client, wait_ready
from tests.media import clip_frames

KEY = "stream-key-0123456789"


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return [cv2.imencode(".jpg", frame)[1].tobytes() for frame in clip_frames("talking_head.mp4", 12)]


@pytest.fixture(scope="module")
def keyed():
    with make_client(api_keys=[KEY], max_upload_bytes=200_000) as client:
        wait_ready(client)
        yield client


def test_each_frame_gets_its_faces_with_one_track_id(client, jpegs):
    with client.websocket_connect("/landmarks/stream") as ws:
        answers = []
        for frame in jpegs:
            ws.send_bytes(frame)
            answers.append(ws.receive_json())
    assert [a["frame"] for a in answers] == list(range(len(jpegs)))
    assert all(len(a["faces"]) == 1 for a in answers)
    assert {a["faces"][0]["track_id"] for a in answers} == {1}
    assert answers[0]["time"] == 0.0 and answers[-1]["time"] > 0
    face = answers[3]["faces"][0]
    assert len(face["landmarks"]) == 68 and {"box", "score", "pose", "error_estimate"} <= set(face)


def test_frames_sent_faster_than_processed_are_dropped_and_every_frame_is_answered(client, jpegs):
    with client.websocket_connect("/landmarks/stream") as ws:
        for frame in jpegs:  # all at once, without waiting for answers
            ws.send_bytes(frame)
        answers = [ws.receive_json() for _ in jpegs]
    assert sorted(a["frame"] for a in answers) == list(range(len(jpegs)))
    dropped = [a["frame"] for a in answers if a.get("dropped")]
    processed = [a["frame"] for a in answers if "faces" in a]
    assert dropped, "a burst of frames must not queue up behind the one in work"
    assert processed[-1] == len(jpegs) - 1, "the newest frame is always processed"
    assert processed == sorted(processed)


def test_a_frame_that_is_no_image_is_answered_with_an_error_and_the_stream_goes_on(client, jpegs):
    with client.websocket_connect("/landmarks/stream") as ws:
        ws.send_bytes(b"not an image at all")
        error = ws.receive_json()
        ws.send_bytes(jpegs[0])
        after = ws.receive_json()
    assert error["frame"] == 0 and error["error"]["code"] == "invalid_image"
    assert after["frame"] == 1 and len(after["faces"]) == 1


def test_a_text_message_closes_with_1003(client):
    with client.websocket_connect("/landmarks/stream") as ws:
        ws.send_text("hello")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1003


def test_without_a_key_the_socket_closes_with_1008_and_says_why(keyed):
    with keyed.websocket_connect("/landmarks/stream") as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 1008
    assert "API key" in closed.value.reason
    with (
        keyed.websocket_connect("/landmarks/stream?api_key=wrong") as ws,
        pytest.raises(WebSocketDisconnect) as bad,
    ):
        ws.receive_json()
    assert bad.value.code == 1008


def test_the_key_in_the_query_or_a_subprotocol_lets_frames_through(keyed, jpegs):
    with keyed.websocket_connect(f"/landmarks/stream?api_key={KEY}") as ws:
        ws.send_bytes(jpegs[0])
        assert len(ws.receive_json()["faces"]) == 1
    with keyed.websocket_connect("/landmarks/stream", subprotocols=["landmarks", f"api-key.{KEY}"]) as ws:
        assert ws.accepted_subprotocol == "landmarks"
        ws.send_bytes(jpegs[0])
        assert len(ws.receive_json()["faces"]) == 1
    with keyed.websocket_connect("/landmarks/stream", headers={"X-API-Key": KEY}) as ws:
        ws.send_bytes(jpegs[0])
        assert len(ws.receive_json()["faces"]) == 1


def test_a_frame_over_the_upload_limit_closes_with_1009(keyed):
    with keyed.websocket_connect(f"/landmarks/stream?api_key={KEY}") as ws:
        ws.send_bytes(b"\xff" * 300_000)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1009


def test_tracks_are_kept_per_connection(client, jpegs):
    for _ in range(2):
        with client.websocket_connect("/landmarks/stream") as ws:
            ws.send_bytes(jpegs[0])
            assert ws.receive_json()["faces"][0]["track_id"] == 1  # every connection counts from 1
