"""Video and live streams against a real server over real HTTP and a real WebSocket: lines arrive as frames
are processed, a client that leaves stops the work, photos keep flowing beside a long video, and a
camera that sends faster than the server keeps a bounded latency."""

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import LFPW, LiveServer
from tests.media import VIDEOS, clip_frames

pytestmark = pytest.mark.slow

LONG_CLIP = VIDEOS / "multi_face.avi"  # 702 frames, three people


@pytest.fixture(scope="module")
def server():
    # One request at a time: a video must still let photo requests through between its frames.
    live = LiveServer(env={"LANDMARKS_MAX_IN_FLIGHT": "1"})
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()


def processed_video_frames(server) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    match = re.search(r'^landmarks_frames_total\{outcome="processed",source="video"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@contextmanager
def streamed_video(server, params: dict, timeout: float) -> Iterator[httpx.Response]:
    """The long clip posted to /landmarks/video, its answer open for reading line by line."""
    with (
        open(LONG_CLIP, "rb") as handle,
        httpx.stream(
            "POST",
            f"{server.url}/landmarks/video",
            params=params,
            files={"video": (LONG_CLIP.name, handle, "video/x-msvideo")},
            timeout=timeout,
        ) as response,
    ):
        yield response


def test_the_first_frame_line_comes_long_before_the_last(server):
    arrivals = []
    started = time.monotonic()
    with streamed_video(server, {"max_frames": 240}, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            arrivals.append((time.monotonic() - started, json.loads(line)))
    first_frame = next(t for t, line in arrivals if "frame" in line)
    total = arrivals[-1][0]
    assert "summary" in arrivals[-1][1]
    assert first_frame < 0.25 * total, (first_frame, total)


def test_a_client_that_disconnects_stops_the_work(server):
    before = processed_video_frames(server)
    with streamed_video(server, {}, timeout=60) as response:
        for number, _ in enumerate(response.iter_lines()):
            if number == 5:
                break
    time.sleep(1.0)
    settled = processed_video_frames(server)
    time.sleep(1.5)
    assert processed_video_frames(server) == settled, "frames are still being processed after the disconnect"
    assert settled - before < 100, "the work went on well past the disconnect"


def test_photo_requests_still_flow_while_a_long_video_runs(server):
    video_done = threading.Event()
    first_line = threading.Event()

    def run_video() -> None:
        with streamed_video(server, {"max_frames": 300}, timeout=180) as response:
            for line in response.iter_lines():
                if '"frame"' in line:
                    first_line.set()
        video_done.set()

    thread = threading.Thread(target=run_video)
    thread.start()
    try:
        assert first_line.wait(60)
        photo = (LFPW / "image_0001.png").read_bytes()
        for _ in range(3):
            started = time.monotonic()
            answer = httpx.post(
                f"{server.url}/landmarks", files={"image": ("f.png", photo, "image/png")}, timeout=30
            )
            assert answer.status_code == 200 and len(answer.json()["faces"]) == 1
            assert time.monotonic() - started < 5.0
        assert not video_done.is_set(), "the photos were answered while the video was still running"
    finally:
        thread.join(timeout=180)


def test_a_camera_faster_than_the_server_keeps_latency_bounded(server):
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in clip_frames("head_turns.avi", 60)]
    answers: dict[int, tuple[float, dict]] = {}
    sent: dict[int, float] = {}
    with connect(f"ws://127.0.0.1:{server.port}/landmarks/stream", subprotocols=["landmarks"]) as ws:
        assert ws.subprotocol == "landmarks"

        def receive() -> None:
            while len(answers) < len(frames):
                message = json.loads(ws.recv(timeout=30))
                answers[message["frame"]] = (time.monotonic(), message)

        receiver = threading.Thread(target=receive)
        receiver.start()
        for index, frame in enumerate(frames):  # 100 frames per second, faster than one worker tracks
            sent[index] = time.monotonic()
            ws.send(frame)
            time.sleep(0.01)
        receiver.join(timeout=60)
    assert sorted(answers) == list(range(len(frames))), "every frame gets an answer"
    processed = [i for i, (_, message) in answers.items() if "faces" in message]
    assert any(message.get("dropped") for _, message in answers.values())
    assert processed and processed[-1] == len(frames) - 1
    last_latency = answers[len(frames) - 1][0] - sent[len(frames) - 1]
    assert last_latency < 1.0, f"the newest frame waited {last_latency:.2f} s"
    assert {answers[i][1]["faces"][0]["track_id"] for i in processed if answers[i][1]["faces"]} == {1}
