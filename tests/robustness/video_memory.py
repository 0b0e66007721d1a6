"""Resident memory of one worker while videos stream: the figures of docs/ROBUSTNESS.md, "Video".

    python -m tests.robustness.video_memory

Starts one uvicorn worker with the default settings, and reports its RSS (with psutil, as bench/load.py
does) idle, while the longest shared clips stream whole and after, a 100-frame cut against the whole
702-frame clip (decoding is one frame at a time: memory must not grow with length), four videos at once
with a photo client beside them, a small AVI whose fourth frame is 16000x16000, and one and four videos
of 6000x6000 frames (within the 40-megapixel limit) at once.
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import DATA, LFPW, LiveServer
from tests.robustness import videos
from tests.robustness.live import MiB, PeakRss, rss_bytes, started

CLIPS = DATA / "video"
FACE = LFPW / "image_0002.png"


def post_video(url: str, data: bytes, name: str, params: dict | None = None) -> str:
    """The answer's last line (the summary, or the error)."""
    with httpx.Client(timeout=900) as client:
        response = client.post(f"{url}/landmarks/video", params=params, files={"video": (name, data)})
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:120]}"
    return response.text.splitlines()[-1][:120]


def clip(name: str, params: dict | None = None) -> Callable[[str], str]:
    return lambda url: post_video(url, (CLIPS / name).read_bytes(), name, params)


def photos_until(url: str, stop: threading.Event) -> list[int]:
    statuses = []
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            files = {"image": ("face.png", FACE.read_bytes(), "image/png")}
            statuses.append(client.post(f"{url}/landmarks", files=files).status_code)
    return statuses


def at_once(count: int, work: Callable[[], str]) -> str:
    with ThreadPoolExecutor(count) as pool:
        lines = list(pool.map(lambda _: work(), range(count)))
    done = sum(line.startswith('{"summary"') for line in lines)
    return f"{done}/{count} summaries"


def measure(server: LiveServer, label: str, work: Callable[[], str]) -> None:
    before = rss_bytes(server.process.pid)
    started_at = time.perf_counter()
    with PeakRss(server.process.pid) as memory:
        outcome = work()
    seconds = time.perf_counter() - started_at
    after = rss_bytes(server.process.pid)
    figures = f"{before / MiB:.0f} | {memory.peak / MiB:.0f} | {after / MiB:.0f} | {seconds:.0f}"
    print(f"| {label} | {figures} | {outcome} |", flush=True)


def main() -> None:
    with started(LiveServer(env={"LANDMARKS_LOG_LEVEL": "warning"})) as server:
        url = server.url
        idle = rss_bytes(server.process.pid)
        clip("multi_face.avi", {"max_frames": 30})(url)  # warm-up: the video path once
        warm = rss_bytes(server.process.pid)
        print(f"ready, idle: {idle / MiB:.0f} MiB; after a 30-frame warm-up: {warm / MiB:.0f} MiB")
        print("| run | RSS before MiB | peak MiB | after MiB | s | last line |")
        print("|---|---|---|---|---|---|")
        measure(
            server,
            "multi_face.avi, first 100 frames",
            lambda: clip("multi_face.avi", {"max_frames": 100})(url),
        )
        measure(server, "multi_face.avi, all 702 frames", lambda: clip("multi_face.avi")(url))
        measure(server, "head_turns.avi, all 842 frames", lambda: clip("head_turns.avi")(url))

        def four_and_photos() -> str:
            stop = threading.Event()
            names = ["multi_face.avi", "head_turns.avi", "backlit.wmv", "talking_head.mp4"]
            with ThreadPoolExecutor(5) as pool:
                photos = pool.submit(photos_until, url, stop)
                lines = list(pool.map(lambda name: clip(name)(url), names))
                stop.set()
                statuses = photos.result()
            ok = sum(1 for line in lines if line.startswith('{"summary"'))
            return f"{ok}/4 summaries; photos beside: {len(statuses)}, statuses {sorted(set(statuses))}"

        measure(server, "4 clips at once + a photo client", four_and_photos)
        huge = videos.mjpeg_avi(
            [videos.jpeg_frame(160, 120, i) for i in range(3)]
            + [videos.flat_jpeg(16000, 16000, colour=True)],
            160,
            120,
        )
        measure(
            server,
            f"AVI of {len(huge) / 1e6:.0f} MB: 3 frames of 160x120, then one of 16000x16000",
            lambda: post_video(url, huge, "huge.avi"),
        )
        large = videos.mjpeg_avi([videos.flat_jpeg(6000, 6000, colour=True)] * 2, 6000, 6000)
        for count in (1, 4):
            measure(
                server,
                f"{count} at once: a {len(large) / 1e6:.0f} MB AVI of 2 frames of 6000x6000",
                lambda count=count: at_once(count, lambda: post_video(url, large, "large.avi")),
            )
        print(f"end: {rss_bytes(server.process.pid) / MiB:.0f} MiB")


if __name__ == "__main__":
    main()
