"""The page's video modes in a real browser against the real service: a video file sent to
``POST /landmarks/video`` and played with its points, and the camera (Chromium's fake camera, fed from a
real clip) streamed over ``WebSocket /landmarks/stream``."""

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Playwright, Response, WebSocket, expect

from tests.conftest import LiveServer
from tests.media import VIDEOS, clip_frames, write_video
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, BrowserTab, open_tab

pytestmark = pytest.mark.slow

TALKING_HEAD = VIDEOS / "talking_head.mp4"  # H.264, 200 frames of one frontal face, 25 fps, 512x512
KEY = "motion-test-key"
NOSE = (0xFF, 0x9F, 0x1C)  # --nose in style.css: the colour the page draws nose points in


def write_y4m(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """A YUV4MPEG2 file (4:2:0, the layout Chromium's fake camera reads) of BGR frames."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory) -> Path:
    """The first 3 s of the talking-head clip as the camera's picture (Chromium loops it)."""
    path = tmp_path_factory.mktemp("camera") / "talking_head.y4m"
    frames = clip_frames(TALKING_HEAD.name, 75)
    assert len(frames) == 75
    write_y4m(path, frames, fps=25)
    return path


@pytest.fixture(scope="module")
def camera_browser(playwright: Playwright, fake_camera: Path) -> Iterator[Browser]:
    fake = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={fake_camera}",
    ]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *fake])
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[LiveServer]:
    server = LiveServer(env={"LANDMARKS_API_KEYS": KEY})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def camera_tab_on(browser: Browser, server: LiveServer) -> Iterator[BrowserTab]:
    viewport = {"width": 1280, "height": 900}
    context, opened = open_tab(browser, server, viewport=viewport, permissions=["camera"])
    yield opened
    context.close()


@pytest.fixture
def camera_tab(camera_browser: Browser, live_server: LiveServer) -> Iterator[BrowserTab]:
    yield from camera_tab_on(camera_browser, live_server)


@pytest.fixture
def keyed_camera_tab(camera_browser: Browser, keyed_server: LiveServer) -> Iterator[BrowserTab]:
    yield from camera_tab_on(camera_browser, keyed_server)


class SocketLog:
    """The frames the page sends on its WebSocket and the answers it gets, in the order they happen, as
    the browser itself reports them (not the page's own counters)."""

    def __init__(self, page: Page) -> None:
        self.sockets: list[WebSocket] = []
        self.events: list[str] = []
        self.answers: list[dict] = []
        page.on("websocket", self._watch)

    def _watch(self, socket: WebSocket) -> None:
        self.sockets.append(socket)
        socket.on("framesent", lambda payload: self.events.append("sent"))
        socket.on("framereceived", self._received)

    def _received(self, payload) -> None:
        self.events.append("answer")
        self.answers.append(json.loads(payload))

    def most_in_flight(self) -> int:
        in_flight = most = 0
        for event in self.events:
            in_flight += 1 if event == "sent" else -1
            most = max(most, in_flight)
        return most


def assert_clean(tab: BrowserTab) -> None:
    """No request left the origin, no script error, nothing the page's CSP refused."""
    assert tab.guard.foreign == []
    assert not [line for line in tab.console if "Content Security Policy" in line or "pageerror" in line]


def start_camera(page: Page) -> None:
    page.goto("/")
    page.get_by_role("button", name="Start camera").click()


def answers(page: Page) -> int:
    return int(page.locator("#camera-result").get_attribute("data-answers") or 0)


def wait_for_answers(page: Page, count: int) -> None:
    answered = "n => Number(document.getElementById('camera-result').dataset.answers) >= n"
    page.wait_for_function(answered, arg=count, timeout=60_000)


def pixels_of(page: Page, canvas: str, colour: tuple[int, int, int], box: dict) -> int:
    """How many pixels of ``canvas`` inside ``box`` (the API's pixels) are ``colour``."""
    return page.evaluate(
        """([selector, colour, box]) => {
            const canvas = document.querySelector(selector);
            const left = Math.max(0, Math.floor(box.left)), top = Math.max(0, Math.floor(box.top));
            const width = Math.min(canvas.width - left, Math.ceil(box.width));
            const height = Math.min(canvas.height - top, Math.ceil(box.height));
            const data = canvas.getContext("2d").getImageData(left, top, width, height).data;
            let count = 0;
            for (let i = 0; i < data.length; i += 4) {
                const near = [0, 1, 2].every((c) => Math.abs(data[i + c] - colour[c]) <= 8);
                if (near && data[i + 3] > 200) count++;
            }
            return count;
        }""",
        [canvas, list(colour), box],
    )


def test_camera_mode_draws_the_points_of_a_real_face_live_with_few_frames_in_flight(
    camera_tab: BrowserTab, artifacts
):
    page = camera_tab.page
    log = SocketLog(page)
    start_camera(page)
    expect(page.locator('#camera-result[data-state="live"]')).to_be_visible()
    expect(page.locator("#camera-stage")).to_have_attribute("data-faces", "1")
    wait_for_answers(page, 15)

    # Answers keep coming, and the page never has more than two frames unanswered.
    assert len(log.sockets) == 1 and log.sockets[0].url.endswith("/landmarks/stream")
    assert log.most_in_flight() <= 2
    assert int(page.locator("#camera-result").get_attribute("data-max-in-flight")) <= 2
    answered = [answer for answer in log.answers if "faces" in answer]
    faces = [answer["faces"] for answer in answered]
    assert len(faces) >= 10
    # One face with its 68 points (the fake camera loops its 3 s clip: a jump at the loop may cost a
    # frame), and one track while the clip has not looped yet.
    assert all(len(frame) <= 1 for frame in faces)
    assert sum(len(frame) == 1 for frame in faces) >= 0.8 * len(faces)
    assert all(len(face["landmarks"]) == 68 for frame in faces for face in frame)
    first_seconds = [answer["faces"] for answer in answered if answer["time"] < 2.0 and answer["faces"]]
    assert len(first_seconds) >= 5 and len({frame[0]["track_id"] for frame in first_seconds}) == 1
    # The page shows the newest answer's track (answers keep coming: its id, not a fixed one).
    expect(page.locator("#camera-stage")).to_have_attribute("data-track-ids", re.compile(r"^\d+$"))
    expect(page.locator("#camera-faces li")).to_have_count(1)
    expect(page.locator("#camera-faces li")).to_contain_text(re.compile(r"Track #\d+"))
    expect(page.locator("#camera-stats")).to_contain_text("fps")
    expect(page.locator("#camera-stats")).to_contain_text("latency")
    assert page.locator("#camera-result").get_attribute("data-latency").isdigit()

    # The nose's points are drawn inside the face's box (the face barely moves between answers).
    assert pixels_of(page, "#camera-overlay", NOSE, faces[-1][0]["box"]) > 0
    page.screenshot(path=artifacts / "page-camera.png", full_page=True)
    assert_clean(camera_tab)


def test_stop_ends_the_camera_and_the_stream_of_raw_points(camera_tab: BrowserTab):
    page = camera_tab.page
    log = SocketLog(page)
    page.goto("/")
    page.get_by_label("Smoothing").uncheck()
    page.get_by_role("button", name="Start camera").click()
    expect(page.locator("#camera-stage")).to_have_attribute("data-faces", "1")
    assert log.sockets[0].url.endswith("/landmarks/stream?smoothing=false")  # the raw points, as asked
    page.evaluate("() => { window.cameraStream = document.getElementById('camera-video').srcObject; }")

    page.get_by_role("button", name="Stop camera").click()
    expect(page.locator("#camera-result")).to_have_attribute("data-state", "stopped")
    expect(page.get_by_role("button", name="Start camera")).to_be_enabled()
    assert page.evaluate("window.cameraStream.getTracks().every((track) => track.readyState === 'ended')")
    assert page.evaluate("document.getElementById('camera-video').srcObject") is None
    page.wait_for_function("() => true")  # let the close handshake finish
    deadline = time.monotonic() + 10
    while not log.sockets[0].is_closed() and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert log.sockets[0].is_closed()
    stopped_at = answers(page)
    page.wait_for_timeout(1000)
    assert answers(page) == stopped_at
    expect(page.locator('#message[data-kind="error"]')).to_have_count(0)


def test_the_camera_sends_the_api_key_and_a_wrong_key_shows_why_the_stream_closed(
    keyed_camera_tab: BrowserTab, artifacts
):
    page = keyed_camera_tab.page
    log = SocketLog(page)
    page.goto("/")
    page.get_by_label("API key").fill("wrong-key")
    start_camera_button = page.get_by_role("button", name="Start camera")
    start_camera_button.click()
    message = page.locator('#message[data-kind="error"]')
    expect(message).to_contain_text("code 1008")
    expect(message).to_contain_text("API key")
    expect(page.locator("#camera-result")).to_have_attribute("data-state", "closed")
    assert page.evaluate("document.getElementById('camera-video').srcObject") is None
    page.screenshot(path=artifacts / "page-camera-wrong-key.png", full_page=True)

    page.get_by_label("API key").fill(KEY)
    start_camera_button.click()
    expect(page.locator("#camera-stage")).to_have_attribute("data-faces", "1")
    expect(page.locator("#message")).to_be_hidden()
    # The key went as a subprotocol, never in the URL (where logs and proxies would keep it).
    assert [socket.url.endswith("/landmarks/stream") for socket in log.sockets] == [True, True]
    page.get_by_role("button", name="Stop camera").click()


def test_a_refused_camera_permission_is_said_plainly(playwright: Playwright, fake_camera: Path, live_server):
    """A browser with a camera whose user says no (Chromium without the fake permission prompt, in a
    context that was not granted the camera)."""
    fake = ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={fake_camera}"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *fake])
    try:
        context, tab = open_tab(browser, live_server)
        log = SocketLog(tab.page)
        start_camera(tab.page)
        expect(tab.page.locator('#message[data-kind="error"]')).to_have_text(
            "The camera was not allowed. Allow this page to use the camera (the icon in the address bar) "
            "and try again."
        )
        expect(tab.page.locator("#camera-result")).to_have_attribute("data-state", "error")
        expect(tab.page.get_by_role("button", name="Start camera")).to_be_enabled()
        assert log.sockets == []  # no stream without a camera
        context.close()
    finally:
        browser.close()


DROP = """([name, type, data]) => {
    const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type}));
    const zone = document.getElementById("drop");
    const options = {dataTransfer: transfer, bubbles: true, cancelable: true};
    for (const event of ["dragenter", "dragover", "drop"]) zone.dispatchEvent(new DragEvent(event, options));
}"""


def drop_video(page: Page, path: Path, media_type: str, status: int = 200) -> Response:
    """Open the page, drop ``path`` on it and wait for the answer of ``POST /landmarks/video``."""
    page.goto("/")
    data = base64.b64encode(path.read_bytes()).decode()
    with page.expect_response(lambda response: "/landmarks/video" in response.url) as answer:
        page.evaluate(DROP, [path.name, media_type, data])
    assert answer.value.status == status
    if status == 200:
        assert answer.value.headers["content-type"].startswith("application/x-ndjson")
    return answer.value


def drop_made_clip(page: Page, path: Path, frames: int, fourcc: str, media_type: str) -> None:
    """Drop the first ``frames`` frames of the talking-head clip, written to ``path`` with ``fourcc``."""
    write_video(path, clip_frames(TALKING_HEAD.name, frames), fps=25, fourcc=fourcc)
    drop_video(page, path, media_type)


def downloaded_lines(page: Page, name: str) -> list[dict]:
    with page.expect_download() as download:
        page.get_by_role("link", name="Download JSONL").click()
    assert download.value.suggested_filename == name
    return [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]


def show_time(page: Page, seconds: float, frames: list[dict]) -> dict:
    """Go to ``seconds`` in the video (or, when the browser cannot play it, move the slider to the frame
    nearest it); the processed frame that should be drawn."""
    nearest = min(frames, key=lambda line: abs(line["time"] - seconds))
    if page.locator("#video-result").get_attribute("data-playable") == "yes":
        page.evaluate(
            """t => new Promise(done => {
                const video = document.getElementById("video");
                video.addEventListener("seeked", done, {once: true});
                video.currentTime = t;
            })""",
            seconds,
        )
    else:
        page.get_by_label("Processed frame").fill(str(frames.index(nearest)))
    return nearest


def expect_drawn(page: Page, frame: dict) -> None:
    """The overlay shows ``frame``: its index, its one face and track, the nose's colour inside its box."""
    stage = page.locator("#video-stage")
    expect(stage).to_have_attribute("data-frame", str(frame["frame"]))
    expect(stage).to_have_attribute("data-faces", "1")
    expect(stage).to_have_attribute("data-track-ids", str(frame["faces"][0]["track_id"]))
    assert pixels_of(page, "#video-overlay", NOSE, frame["faces"][0]["box"]) > 0
    expect(page.locator("#video-faces li")).to_have_count(1)


def test_a_dropped_mp4_shows_its_progress_to_the_end_and_the_points_at_a_chosen_time(
    tab: BrowserTab, artifacts
):
    page = tab.page
    drop_video(page, TALKING_HEAD, "video/mp4")
    result = page.locator("#video-result")
    expect(result).to_have_attribute("data-state", "done", timeout=180_000)

    lines = downloaded_lines(page, "talking_head.landmarks.jsonl")
    header, frames, summary = lines[0], lines[1:-1], lines[-1]
    assert header["video"]["width"] == 512 and "summary" in summary
    assert len(frames) == header["video"]["frames"] == 200
    assert page.locator("#video-progress").evaluate("bar => [bar.value, bar.max]") == [200, 200]
    expect(page.locator("#video-progress-text")).to_contain_text("200 / 200 frames")
    expect(page.locator("#video-summary")).to_contain_text(f"{summary['summary']['tracks']} track")
    # Debian's chromium reads MP4 but has no H.264 decoder: then the page says so and shows the points
    # alone; a browser with H.264 plays the video under them. Either way the frame at 6.5 s is drawn.
    if result.get_attribute("data-playable") == "no":
        expect(page.locator("#message")).to_have_text(
            "This browser cannot play MP4; landmarks were computed for 200 frames."
        )
    expect_drawn(page, show_time(page, 6.5, frames))
    page.screenshot(path=artifacts / "page-video-mp4.png", full_page=True)
    assert_clean(tab)


@pytest.mark.parametrize("follow", ["frame callbacks", "timeupdate"])
def test_a_webm_plays_with_the_points_of_the_frame_at_the_current_time(
    tab: BrowserTab, tmp_path, artifacts, follow: str
):
    page = tab.page
    if follow == "timeupdate":  # a browser without requestVideoFrameCallback (Firefox before 132)
        page.add_init_script("delete HTMLVideoElement.prototype.requestVideoFrameCallback")
    drop_made_clip(page, tmp_path / "talking_head.webm", 50, "VP80", "video/webm")
    result = page.locator("#video-result")
    expect(result).to_have_attribute("data-playable", "yes")
    expect(result).to_have_attribute("data-state", "done", timeout=120_000)
    expect(page.locator("#message")).to_be_hidden()
    frames = downloaded_lines(page, "talking_head.landmarks.jsonl")[1:-1]
    assert len(frames) == 50
    for seconds in (0.5, 1.62):
        expect_drawn(page, show_time(page, seconds, frames))
    # Playing: the drawn frame follows the playback time.
    page.evaluate("document.getElementById('video').play()")
    page.wait_for_function("() => document.getElementById('video').ended", timeout=30_000)
    expect(page.locator("#video-stage")).to_have_attribute("data-frame", str(frames[-1]["frame"]))
    page.get_by_label("point numbers").check()  # the toggles apply to the overlay too
    show_time(page, 1.0, frames)
    if follow == "frame callbacks":
        page.screenshot(path=artifacts / "page-video.png", full_page=True)


def test_an_avi_the_browser_cannot_play_still_shows_its_landmarks(tab: BrowserTab, tmp_path, artifacts):
    page = tab.page
    drop_made_clip(page, tmp_path / "talking_head.avi", 20, "MJPG", "video/x-msvideo")
    result = page.locator("#video-result")
    expect(result).to_have_attribute("data-state", "done", timeout=120_000)
    expect(result).to_have_attribute("data-playable", "no")
    message = page.locator('#message[data-kind="cannot-play"]')
    expect(message).to_have_text("This browser cannot play AVI; landmarks were computed for 20 frames.")
    # The points alone, for the newest frame, and a slider over the processed frames.
    expect(page.locator("#video-overlay")).to_be_visible()
    expect(page.locator("#video-stage")).to_have_attribute("data-frame", "19")
    expect(page.locator("#video-stage")).to_have_attribute("data-faces", "1")
    slider = page.get_by_label("Processed frame")
    expect(slider).to_be_visible()
    slider.fill("5")
    expect(page.locator("#video-stage")).to_have_attribute("data-frame", "5")
    lines = downloaded_lines(page, "talking_head.landmarks.jsonl")
    assert len(lines) == 22 and "video" in lines[0] and "summary" in lines[-1]
    assert pixels_of(page, "#video-overlay", NOSE, lines[6]["faces"][0]["box"]) > 0
    page.screenshot(path=artifacts / "page-video-avi.png", full_page=True)


def test_a_video_that_fails_mid_stream_keeps_its_frames_and_says_why(tab: BrowserTab, tmp_path):
    """A truncated AVI: the service streams the frames it can read, then an error line."""
    whole = write_video(tmp_path / "whole.avi", clip_frames(TALKING_HEAD.name, 40), fps=25, fourcc="MJPG")
    clip = tmp_path / "truncated.avi"
    clip.write_bytes(whole.read_bytes()[: whole.stat().st_size * 55 // 100])
    page = tab.page
    drop_video(page, clip, "video/x-msvideo")
    result = page.locator("#video-result")
    expect(result).to_have_attribute("data-state", "error")
    lines = downloaded_lines(page, "truncated.landmarks.jsonl")
    frames, last = lines[1:-1], lines[-1]
    assert 0 < len(frames) < 40 and last["error"]["code"] == "truncated_video"
    message = page.locator('#message[data-kind="error"]')
    said = f"The service stopped after {len(frames)} frames: {last['error']['message']}"
    expect(message).to_contain_text(said)
    expect(message).to_contain_text("truncated_video")
    page.wait_for_timeout(500)  # nor does the video element's own error (AVI) replace it
    expect(message).to_contain_text(said)
    expect(page.locator("#video-stage")).to_have_attribute("data-faces", "1")  # the frames it read are shown


def test_a_file_that_is_no_video_shows_the_api_error(tab: BrowserTab, tmp_path):
    clip = tmp_path / "notes.mp4"
    clip.write_bytes(b"these are notes, not a video\n" * 100)
    page = tab.page
    error = drop_video(page, clip, "video/mp4", status=400).json()["error"]
    assert error["code"] == "invalid_video"
    message = page.locator('#message[data-kind="error"]')
    expect(message).to_contain_text(error["message"])
    expect(message).to_contain_text("invalid_video")
    expect(page.locator("#video-result")).to_be_hidden()
    page.wait_for_timeout(500)  # the video element's own error comes later and must not replace it
    expect(message).to_contain_text(error["message"])
