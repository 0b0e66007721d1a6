"""Hostile videos, end to end against a real uvicorn process: bad input never kills the worker.

Every broken, huge, lying or misfiled video (tests/robustness/videos.py) gets its documented answer from
``POST /landmarks/video``: an ordinary JSON 4xx when the header or the first frame shows the problem, a
stream ending in an ``{"error": ...}`` line when the file breaks after the answer started. After each,
the same worker process (same pid) answers a photo. The WebSocket gets hostile frames and messages and
answers or closes with its documented codes. Memory: decoding is one frame at a time (a long clip costs
no more than a short one) and the whole table leaves memory where it found it. See docs/ROBUSTNESS.md.
"""

import contextlib
import json
import struct
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import LFPW, LiveServer
from tests.robustness import inputs, videos
from tests.robustness.live import MiB, PeakRss, assert_json_error, rss_bytes, started

pytestmark = pytest.mark.slow  # a real uvicorn process

VIDEO_BYTES = (
    8_000_000  # LANDMARKS_MAX_VIDEO_BYTES, smaller than the default so the oversized upload is quick
)
FRAME_LIMIT = 1_000  # LANDMARKS_MAX_VIDEO_FRAMES
PIXEL_LIMIT = 4_000_000  # LANDMARKS_MAX_PIXELS: images at the limit stay quick to decode and detect
UPLOAD_BYTES = 2_000_000  # LANDMARKS_MAX_UPLOAD_BYTES: the WebSocket's frame limit
FACE = LFPW / "image_0002.png"  # one frontal face
# Peak memory while a 600-frame 640x480 clip streams may exceed the level after warm-up by this (the
# clip decoded whole would be 527 MiB); the whole table, run again, may leave this much behind.
STREAM_GROWTH_BOUND = 64 * MiB
TABLE_GROWTH_BOUND = 64 * MiB
# Peak growth while four WebSocket frames at the pixel limit are in progress at once.
FRAME_TURNS_GROWTH_BOUND = 64 * MiB

Send = Callable[[httpx.Client], httpx.Response]


@dataclass(frozen=True)
class HostileVideo:
    name: str
    send: Send
    status: int
    code: str  # the error code; for a 200, the last line's key: "summary", or the error line's code
    frames: int | None = None  # for a 200: the frame lines the answer must hold


def upload(data: bytes, filename: str = "clip.avi", field: str = "video") -> Send:
    return lambda c: c.post("/landmarks/video", files={field: (filename, data, "application/octet-stream")})


def patched(data: bytes, box: bytes, offset: int, value: int) -> bytes:
    """``data`` with the 32-bit big-endian field ``offset`` bytes after the first ``box`` set to ``value``."""
    out = bytearray(data)
    at = out.find(box)
    out[at + offset : at + offset + 4] = struct.pack(">I", value)
    return bytes(out)


def end_of(data: bytes, box: bytes) -> int:
    return next(end for kind, _, end in videos.mp4_boxes(data) if kind == box)


def private_video() -> Path:
    """A video file on the server's disk beside the spooled uploads (the temporary folder)."""
    target = Path(tempfile.gettempdir()) / "landmarks-test-private.avi"
    target.write_bytes(videos.gradient_avi(5, 96, 72))
    return target


def playlist() -> bytes:
    """An HLS playlist whose one segment is a video file on the server's disk."""
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{private_video()}\n#EXT-X-ENDLIST\n".encode()


def concat_script() -> bytes:
    """FFmpeg's concat script (recognised from its first line, whatever the name) naming a file beside it."""
    return f"ffconcat version 1.0\nfile {private_video().name}\n".encode()


AVI = videos.gradient_avi(10, 96, 72)  # 10 frames of 96x72, MJPEG; index at the end
MP4 = videos.opencv_video(10, 96, 72)  # mp4v: ftyp, free, mdat, moov (the index last)
FASTSTART = videos.faststart(MP4)  # ftyp, free, moov, mdat (the index first)
FIRST_FRAME = AVI.find(b"00dc") + 8  # where the first JPEG starts
RANDOM = np.random.default_rng(7).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes()
SMALL = [videos.jpeg_frame(160, 120, i) for i in range(5)]

CASES: list[HostileVideo] = [
    # Not a video at all
    HostileVideo("empty file", upload(b""), 400, "invalid_video"),
    HostileVideo("random bytes", upload(RANDOM), 400, "invalid_video"),
    HostileVideo("text file", upload(b"hello, world\n" * 100, "notes"), 400, "invalid_video"),
    # FFmpeg picks some formats by the file's extension alone: the upload's name must not reach it
    HostileVideo(
        "text file named .txt (FFmpeg's ANSI-art demuxer)",
        upload(b"hello\n" * 100, "a.txt"),
        400,
        "invalid_video",
    ),
    HostileVideo(
        "HLS playlist naming a video on the server's disk",
        lambda c: upload(playlist(), "a.m3u8")(c),
        400,
        "invalid_video",
    ),
    HostileVideo(
        "ffconcat script naming a video beside the upload",
        lambda c: upload(concat_script())(c),
        400,
        "invalid_video",
    ),
    HostileVideo("JPEG photo", upload(inputs.small_jpeg(), "photo.jpg"), 400, "invalid_video"),
    HostileVideo("PNG photo", upload(inputs.small_png(), "photo.png"), 400, "invalid_video"),
    HostileVideo("animated GIF", upload(inputs.animated_gif(), "a.gif"), 400, "invalid_video"),
    # Truncated inside the header or before a whole frame: nothing to decode
    *[
        HostileVideo(f"AVI cut at byte {at} (header)", upload(AVI[:at]), 400, "invalid_video")
        for at in (4, 12, 100, 200)
    ],
    HostileVideo("AVI cut inside its first frame", upload(AVI[: FIRST_FRAME + 100]), 400, "invalid_video"),
    *[
        HostileVideo(
            f"MP4 (index last) cut at {keep:.0%}",
            upload(MP4[: int(len(MP4) * keep)], "a.mp4"),
            400,
            "invalid_video",
        )
        for keep in (0.02, 0.3, 0.9)
    ],
    HostileVideo(
        "MP4 (index first) cut in its index", upload(FASTSTART[:300], "a.mp4"), 400, "invalid_video"
    ),
    HostileVideo(
        "MP4 (index first) cut before its first frame",
        upload(FASTSTART[: end_of(FASTSTART, b"moov") + 10], "a.mp4"),
        400,
        "invalid_video",
    ),
    # Truncated after a few frames: the answer has started, its last line says what happened
    *[
        HostileVideo(
            f"AVI cut at {keep:.0%}", upload(AVI[: int(len(AVI) * keep)]), 200, "truncated_video", frames
        )
        for keep, frames in ((0.25, 3), (0.6, 6))
    ],
    *[
        HostileVideo(
            f"MP4 (index first) cut at {keep:.0%}",
            upload(FASTSTART[: int(len(FASTSTART) * keep)], "a.mp4"),
            200,
            "truncated_video",
            frames,
        )
        # Frames FFmpeg recovers from the cut file with the pinned OpenCV (4.11; 5.x recovers 5 at 60 %).
        for keep, frames in ((0.3, 2), (0.6, 6))
    ],
    HostileVideo(
        "AVI whose header announces 30 times its frames",
        upload(videos.gradient_avi(10, 96, 72, total_frames=300)),
        200,
        "truncated_video",
        10,
    ),
    # No frame
    HostileVideo(
        "AVI with a header and no frame", upload(videos.mjpeg_avi([], 160, 120)), 400, "invalid_video"
    ),
    # Frame rates: FFmpeg itself falls back to 25 fps when an AVI says 0; an MP4's timescale cannot be guessed
    HostileVideo(
        "AVI with frame rate 0 (dwRate, dwScale, dwMicroSecPerFrame all 0)",
        upload(videos.gradient_avi(10, 96, 72, rate=0, scale=0, usec_per_frame=0)),
        200,
        "summary",
        10,
    ),
    HostileVideo(
        # FFmpeg reads timescale 0 as 1: one frame every 512 s (0.002 fps), and decodes only the first.
        "MP4 with timescale 0 (mdhd)",
        upload(patched(videos.faststart(videos.opencv_video(30, 96, 72)), b"mdhd", 16, 0), "a.mp4"),
        400,
        "invalid_video",
    ),
    HostileVideo(
        "MP4 at 12800 fps (stts sample delta 1)",
        upload(patched(FASTSTART, b"stts", 16, 1), "a.mp4"),
        400,
        "invalid_video",
    ),
    # Sizes
    HostileVideo(
        "MJPEG AVI of 9000x9000 frames (2 MB)",
        upload(videos.mjpeg_avi([videos.flat_jpeg(9000, 9000)] * 2, 9000, 9000)),
        413,
        "too_many_pixels",
    ),
    HostileVideo(
        "AVI whose frames claim 30000x30000 (JPEG header)",
        upload(videos.mjpeg_avi([inputs.jpeg_claiming(30000, 30000)] * 2, 160, 120)),
        400,
        "invalid_video",
    ),
    HostileVideo(
        # The frames' JPEG headers decide: FFmpeg takes the size from the first frame.
        "AVI header claiming 100000x100000 around 160x120 frames",
        upload(videos.mjpeg_avi(SMALL, 100_000, 100_000)),
        200,
        "summary",
        5,
    ),
    HostileVideo(
        # OpenCV scales every frame to the first frame's size.
        "frames growing from 160x120 to 320x240 midway",
        upload(videos.mjpeg_avi(SMALL + [videos.jpeg_frame(320, 240, i) for i in range(3)], 160, 120)),
        200,
        "summary",
        8,
    ),
    HostileVideo(
        "frames growing from 160x120 to 9000x9000 midway",
        upload(videos.mjpeg_avi(SMALL + [videos.flat_jpeg(9000, 9000)], 160, 120)),
        200,
        "summary",
        6,
    ),
    # Length and bytes
    HostileVideo(
        f"header announcing {FRAME_LIMIT + 200} frames (the limit is {FRAME_LIMIT})",
        upload(videos.gradient_avi(10, 96, 72, total_frames=FRAME_LIMIT + 200)),
        413,
        "too_many_frames",
    ),
    HostileVideo(
        # The limit counts frames decoded, not announced: the stream ends in its error line.
        f"header announcing 5 frames around {FRAME_LIMIT + 5} (every 100th tracked)",
        lambda c: c.post(
            "/landmarks/video",
            params={"stride": 100},
            files={
                "video": (
                    "a.avi",
                    videos.mjpeg_avi([videos.flat_jpeg(16, 16)] * (FRAME_LIMIT + 5), 16, 16, total_frames=5),
                )
            },
        ),
        200,
        "too_many_frames",
        FRAME_LIMIT // 100,
    ),
    HostileVideo("upload over the byte limit", upload(AVI + b"\0" * VIDEO_BYTES), 413, "payload_too_large"),
    # The form
    HostileVideo("video in the field 'image'", upload(AVI, field="image"), 400, "invalid_request"),
    HostileVideo(
        "text field 'video' instead of a file",
        lambda c: c.post("/landmarks/video", data={"video": "clip.avi"}),
        400,
        "invalid_request",
    ),
    HostileVideo(
        "raw AVI body, not multipart",
        lambda c: c.post("/landmarks/video", content=AVI, headers={"content-type": "video/x-msvideo"}),
        400,
        "invalid_request",
    ),
    HostileVideo("no body", lambda c: c.post("/landmarks/video"), 400, "invalid_request"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    env = {
        "LANDMARKS_MAX_VIDEO_BYTES": str(VIDEO_BYTES),
        "LANDMARKS_MAX_VIDEO_FRAMES": str(FRAME_LIMIT),
        "LANDMARKS_MAX_PIXELS": str(PIXEL_LIMIT),
        "LANDMARKS_MAX_UPLOAD_BYTES": str(UPLOAD_BYTES),
        "LANDMARKS_LOG_LEVEL": "warning",
    }
    with started(LiveServer(env=env)) as live:
        yield live


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def ndjson(response: httpx.Response) -> list[dict]:
    assert response.headers["content-type"].startswith("application/x-ndjson"), response.headers
    return [json.loads(line) for line in response.text.splitlines()]


def check(case: HostileVideo, response: httpx.Response) -> None:
    if case.status != 200:
        assert_json_error(response, case.status, case.code)
        return
    assert response.status_code == 200, response.text
    lines = ndjson(response)
    assert "video" in lines[0], lines[0]
    frames = [line for line in lines[1:-1] if "frame" in line]
    assert len(frames) == len(lines) - 2 == case.frames, [list(line) for line in lines]
    last = lines[-1]
    if case.code == "summary":
        assert last["summary"]["frames"] == case.frames, last
    else:
        assert last["error"]["code"] == case.code and last["error"]["message"], last


def assert_same_worker_serves(server: LiveServer, http: httpx.Client) -> None:
    """The worker that took the hostile video is still the one answering, and answers a photo."""
    assert server.process.poll() is None, server.output[-3000:]
    response = http.post("/landmarks", files={"image": ("face.png", FACE.read_bytes(), "image/png")})
    assert response.status_code == 200, response.text + server.output[-3000:]
    assert len(response.json()["faces"]) == 1


@pytest.fixture(scope="module")
def worker_pid(server: LiveServer) -> int:
    return server.process.pid


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_video_gets_its_documented_answer_and_the_worker_lives(server, http, worker_pid, case):
    check(case, case.send(http))
    assert server.process.pid == worker_pid
    assert_same_worker_serves(server, http)


# The WebSocket: hostile frames are answered one by one; hostile messages close with the documented code.


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/landmarks/stream"


def close_code(websocket) -> int:
    """The server's close code after it closes (frames answered before that are skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            websocket.recv(timeout=60)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return closed.value.rcvd.code


def test_websocket_answers_hostile_frames_with_errors_and_goes_on_tracking(server, http):
    frames = [
        (RANDOM, "invalid_image"),
        (b"", "invalid_image"),
        (inputs.truncated(inputs.small_jpeg(), 0.3), "invalid_image"),
        (inputs.png_claiming(30000, 30000), "too_many_pixels"),
        (AVI, "invalid_image"),  # a video sent as a frame
    ]
    with connect(ws_url(server), max_size=None) as websocket:
        for index, (data, code) in enumerate(frames):
            websocket.send(data)
            answer = json.loads(websocket.recv(timeout=60))
            assert answer["frame"] == index and answer["error"]["code"] == code, answer
        websocket.send(FACE.read_bytes())
        answer = json.loads(websocket.recv(timeout=60))
        assert answer["frame"] == len(frames) and len(answer["faces"]) == 1, answer
        assert isinstance(answer["faces"][0]["track_id"], int)
    assert_same_worker_serves(server, http)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("a text message", 1003),
        (b"\xff" * (UPLOAD_BYTES + 1), 1009),  # past LANDMARKS_MAX_UPLOAD_BYTES: the route closes
        (b"\xff" * (17 * MiB), 1009),  # past uvicorn's 16 MiB message limit: uvicorn closes
    ],
    ids=["text message", "frame over the upload limit", "frame over uvicorn's message limit"],
)
def test_websocket_closes_on_a_hostile_message_with_its_code(server, http, message, code):
    with connect(ws_url(server), max_size=None) as websocket:
        with contextlib.suppress(ConnectionClosed):  # the server may close before the whole message is sent
            websocket.send(message)
        assert close_code(websocket) == code
    assert_same_worker_serves(server, http)


def test_websocket_frames_at_the_pixel_limit_take_turns_so_memory_stays_near_that_of_one(server):
    """Four connections each send a flat 2000x2000 PNG (the pixel limit) at once: each frame holds its
    pixels in the worker's budget while it is decoded and tracked, as a photo does, so they run one after
    the other."""
    data = inputs.large_flat_png(2000)

    def one_frame(_: int) -> list:
        with connect(ws_url(server), max_size=None) as websocket:
            websocket.send(data)
            return json.loads(websocket.recv(timeout=120))["faces"]

    one_frame(0)  # warm-up: one alone
    baseline = rss_bytes(server.process.pid)
    with PeakRss(server.process.pid) as memory, ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one_frame, range(4))) == [[]] * 4
    growth = memory.peak - baseline
    print(f"peak RSS {baseline / MiB:.0f} -> {memory.peak / MiB:.0f} MiB")
    assert growth <= FRAME_TURNS_GROWTH_BOUND, f"peak grew by {growth / MiB:.0f} MiB"


# Memory


def long_clip(frames: int) -> bytes:
    """A 640x480 MJPEG AVI: 0.9 MB a frame once decoded, a few kB a frame in the file."""
    pictures = [videos.jpeg_frame(640, 480, i, quality=40) for i in range(4)]
    return videos.mjpeg_avi([pictures[i % 4] for i in range(frames)], 640, 480)


def stream_with_peak(
    server: LiveServer, http: httpx.Client, data: bytes, params: dict
) -> tuple[list[dict], int]:
    """The lines of one video request and the worker's peak resident memory while it ran."""
    with PeakRss(server.process.pid) as memory:
        response = http.post(
            "/landmarks/video", params=params, files={"video": ("long.avi", data, "video/avi")}
        )
    assert response.status_code == 200, response.text
    return ndjson(response), memory.peak


def test_a_long_video_is_decoded_one_frame_at_a_time(server, http):
    """600 frames of 640x480 (527 MiB decoded), every one decoded, every 50th tracked: memory while it
    streams stays where a 50-frame clip leaves it."""
    stream_with_peak(server, http, long_clip(50), {"stride": 50})  # warm-up
    baseline = rss_bytes(server.process.pid)
    lines, peak = stream_with_peak(server, http, long_clip(600), {"stride": 50})
    assert lines[-1]["summary"]["frames"] == 12, lines[-1]
    print(f"RSS after warm-up {baseline / MiB:.0f} MiB, peak while 600 frames streamed {peak / MiB:.0f} MiB")
    assert peak - baseline <= STREAM_GROWTH_BOUND, f"grew by {(peak - baseline) / MiB:.0f} MiB"


def test_memory_stays_bounded_under_the_whole_table(server, http):
    for case in CASES:  # warm-up: every path once
        case.send(http)
    baseline = rss_bytes(server.process.pid)
    for case in CASES:
        check(case, case.send(http))
    after = rss_bytes(server.process.pid)
    print(f"RSS after warm-up {baseline / MiB:.0f} MiB, after the table again {after / MiB:.0f} MiB")
    assert after - baseline <= TABLE_GROWTH_BOUND, f"grew by {(after - baseline) / MiB:.0f} MiB"


CONTAINERS = [
    ("MJPG", ".avi"),
    ("XVID", ".avi"),
    ("mp4v", ".mp4"),
    ("mp4v", ".mov"),
    ("MJPG", ".mkv"),
    ("VP80", ".webm"),
    ("VP90", ".webm"),
    ("WMV2", ".wmv"),
    ("mp4v", ".ts"),
    ("mp4v", ".mpg"),
    ("FLV1", ".flv"),
]


@pytest.mark.parametrize(("fourcc", "suffix"), CONTAINERS, ids=[f"{f} {s}" for f, s in CONTAINERS])
def test_every_served_container_decodes_under_the_container_whitelist(http, fourcc, suffix):
    data = videos.opencv_video(4, 96, 72, fourcc=fourcc, suffix=suffix)
    response = http.post(
        "/landmarks/video", files={"video": (f"clip{suffix}", data, "application/octet-stream")}
    )
    assert response.status_code == 200, response.text
    lines = ndjson(response)
    assert lines[0]["video"]["width"] == 96 and lines[-1]["summary"]["frames"] == 4, (lines[0], lines[-1])
