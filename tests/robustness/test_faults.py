"""Faults, on real uvicorn processes: a missing or corrupt checkpoint at start, SIGTERM with requests in
flight and in the queue, exceptions inside detection and the network, overload (the admission queue),
clients that stall or vanish, and dlib called from many threads at once."""

import contextlib
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.test_health_metrics import metric
from tests.conftest import LFPW, PHOTOS, REPO, SHIPPED_MODEL, LiveServer
from tests.robustness import fault_widths, inputs
from tests.robustness.live import assert_json_error, read_response

pytestmark = pytest.mark.slow  # real uvicorn processes (and a dlib subprocess)

STARTUP_FAILURE = 3  # uvicorn's exit status when the application's startup fails
FACE = LFPW / "image_0002.png"


def log_records(output: str) -> list[dict]:
    records = []
    for line in output.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def wait_all_workers_ready(server: LiveServer, workers: int, timeout: float = 60.0) -> None:
    """/health/ready answers from whichever worker accepts the connection; wait for every one."""
    server.wait_ready(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(r["message"] == "ready" for r in log_records(server.output)) >= workers:
            return
        time.sleep(0.1)
    raise AssertionError(f"not all {workers} workers became ready")


def run_uvicorn_until_exit(
    model_path: Path, workers: int, launcher: bool = False, timeout: float = 60.0
) -> tuple[int, str]:
    server = LiveServer(env={"LANDMARKS_MODEL_PATH": str(model_path)}, workers=workers, launcher=launcher)
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code, output = server.stop(signal.SIGKILL)
        raise AssertionError(f"uvicorn kept running with a bad checkpoint:\n{output[-3000:]}") from None
    return server.stop()


# --- A bad checkpoint at start ----------------------------------------------------------------------


def bad_checkpoint(kind: str, folder: Path) -> tuple[Path, str]:
    """A checkpoint path of the given kind and the phrase the log must give as the reason."""
    path = folder / f"{kind}.pt"
    if kind == "missing":
        return path, "not found"
    if kind == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 100)
        return path, "unreadable or corrupt"
    if kind == "truncated":
        data = SHIPPED_MODEL.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "unreadable or corrupt"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated"])
def test_bad_checkpoint_stops_startup_with_exit_3_and_the_reason_logged(tmp_path, kind):
    path, reason = bad_checkpoint(kind, tmp_path)
    code, output = run_uvicorn_until_exit(path, workers=1)
    assert code == STARTUP_FAILURE, output[-3000:]
    errors = [r for r in log_records(output) if r.get("logger") == "app.main" and r["level"] == "error"]
    assert errors, output[-3000:]
    assert "cannot load the model" in errors[0]["message"] and reason in errors[0]["message"]
    assert errors[0]["model_path"] == str(path)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_serve_launcher_exits_3_on_a_bad_checkpoint_whatever_web_concurrency(tmp_path, workers):
    """Plain uvicorn with several workers exits 0 when every worker fails to load the model (its
    supervisor does not pass the failure on); ``face-landmarks serve`` checks the checkpoint first."""
    path, reason = bad_checkpoint("garbage", tmp_path)
    code, output = run_uvicorn_until_exit(path, workers=workers, launcher=True)
    assert code == STARTUP_FAILURE, output[-3000:]
    errors = [r for r in log_records(output) if r.get("logger") == "app.main" and r["level"] == "error"]
    assert errors and reason in errors[0]["message"], output[-3000:]
    assert errors[0]["model_path"] == str(path)
    assert "Started server process" not in output  # uvicorn never started


# --- SIGTERM with requests in flight ------------------------------------------------------------------


def start_slow_upload(
    port: int, data: bytes, held_back: int = 1000, request_id: str | None = None
) -> tuple[socket.socket, bytes]:
    """Open a landmark request on a raw socket and send all but the last ``held_back`` bytes of its body;
    returns the socket and the rest to send (nothing is read)."""
    boundary = "sigterm-boundary"
    body = inputs.multipart_body(boundary, [("image", "face.png", "image/png", data)])
    named = f"X-Request-ID: {request_id}\r\n" if request_id else ""
    head = (
        f"POST /landmarks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{named}"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(head + body[: len(body) - held_back])
    return sock, body[len(body) - held_back :]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_in_flight_requests_finish(workers):
    server = LiveServer(workers=workers, launcher=True)  # the production command, also serving
    try:
        wait_all_workers_ready(server, workers)
        photo = (PHOTOS / "bald_guys.jpg").read_bytes()
        results: dict[str, httpx.Response] = {}

        def slow_detection() -> None:  # about 3 s of dlib work at upsample=2
            results["slow"] = httpx.post(
                f"{server.url}/landmarks",
                params={"upsample": 2},
                files={"image": ("b.jpg", photo, "image/jpeg")},
                timeout=120,
            )

        worker = threading.Thread(target=slow_detection)
        worker.start()
        upload, rest = start_slow_upload(server.port, FACE.read_bytes())
        time.sleep(1.0)  # both requests are in progress: one computing, one still uploading
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        upload.sendall(rest)  # the upload finishes after the signal
        assert read_response(upload, timeout=60)[0] == 200
        upload.close()
        worker.join(timeout=120)
        assert results["slow"].status_code == 200, results["slow"].text
        assert len(results["slow"].json()["faces"]) >= 20
        code, output = server.stop(timeout=60)
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)
    # uvicorn re-raises the SIGTERM after a clean shutdown (so a single worker ends by the signal); the
    # multi-process supervisor exits 0. Either way the lifespan's shutdown has run.
    assert code in (0, -signal.SIGTERM), output[-3000:]
    assert "Application shutdown complete" in output, output[-3000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health/live", timeout=2)


def wait_for_queue_depth(server: LiveServer, depth: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while metric(httpx.get(f"{server.url}/metrics").text, "landmarks_queue_depth") != depth:
        assert time.monotonic() < deadline, f"the queue never held {depth} requests"
        time.sleep(0.02)


def test_sigterm_serves_queued_requests_within_the_grace_and_answers_the_rest_503():
    """Four slow requests (1.5 s each) on one slot, SIGTERM once three are queued, with a 2 s grace: the
    running one and the next (which starts at 1.5 s) are served; the last two cannot start within the
    grace and are answered 503 shutting_down when it ends. None is dropped without an answer."""
    env = {**QUEUE_SETTINGS, "LANDMARKS_QUEUE_TIMEOUT_SECONDS": "30", "LANDMARKS_SHUTDOWN_GRACE_SECONDS": "2"}
    server = LiveServer(env=env, app="tests.robustness.faulty_app:app")
    try:
        server.wait_ready()
        with ThreadPoolExecutor(1) as pool:
            sent = pool.submit(post_at_once, server, 4)
            wait_for_queue_depth(server, 3)
            server.process.send_signal(signal.SIGTERM)
            results = sent.result(timeout=60)
        code, output = server.stop(timeout=30)
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)
    assert sorted(response.status_code for _, response in results) == [200, 200, 503, 503]
    for seconds, response in results:
        if response.status_code == 200:
            continue
        assert_json_error(response, 503, "shutting_down")
        assert response.headers["retry-after"] == "1"
        assert 1.5 < seconds < 3.5  # answered when the grace ended, not when a slot would have freed
    assert code in (0, -signal.SIGTERM), output[-3000:]
    assert "Application shutdown complete" in output, output[-3000:]


# --- Exceptions inside detection and the network, overload, stalled and vanishing clients ------------


# One request runs at a time; three may wait, each at most QUEUE_TIMEOUT seconds. With slow requests of
# SLOW_SECONDS (1.5 s) the third in the queue would start after 4.5 s: it is refused at 3.75 s.
QUEUE_SETTINGS = {
    "LANDMARKS_MAX_IN_FLIGHT": "1",
    "LANDMARKS_MAX_QUEUE": "3",
    "LANDMARKS_QUEUE_TIMEOUT_SECONDS": "3.75",
}


@pytest.fixture(scope="module")
def faulty() -> Iterator[LiveServer]:
    server = LiveServer(env=QUEUE_SETTINGS, app="tests.robustness.faulty_app:app")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def image_of_width(width: int) -> bytes:
    return inputs.encode(inputs.rgb_image(width, 20), "PNG")


def post(server: LiveServer, data: bytes, **kwargs) -> httpx.Response:
    return httpx.post(
        f"{server.url}/landmarks", files={"image": ("x.png", data, "image/png")}, timeout=60, **kwargs
    )


def assert_alive_and_serving(server: LiveServer, pid: int) -> None:
    assert server.process.poll() is None and server.process.pid == pid
    response = post(server, FACE.read_bytes())
    assert response.status_code == 200 and len(response.json()["faces"]) == 1


@pytest.mark.parametrize(
    "width",
    [fault_widths.RAISE_IN_DETECTION_WIDTH, fault_widths.RAISE_IN_NETWORK_WIDTH],
    ids=["detection", "network"],
)
def test_exception_inside_inference_is_a_json_500_with_the_request_id(faulty, width):
    pid = faulty.process.pid
    response = post(faulty, image_of_width(width), headers={"x-request-id": f"fault-{width}"})
    error = assert_json_error(response, 500, "internal_error")
    assert error["request_id"] == f"fault-{width}"
    assert "injected" not in error["message"] and "Traceback" not in response.text  # no internals leak
    time.sleep(0.2)
    logged = [r for r in log_records(faulty.output) if r.get("request_id") == f"fault-{width}"]
    assert any(r["message"] == "unhandled error" and "exception" in r for r in logged), logged
    assert any(r["message"] == "request" and r["status"] == 500 for r in logged), logged
    assert_alive_and_serving(faulty, pid)


def post_at_once(server: LiveServer, count: int) -> list[tuple[float, httpx.Response]]:
    """``count`` slow requests at once, each with the seconds it took."""

    def send(_: int) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        response = post(server, image_of_width(fault_widths.SLOW_WIDTH))
        return time.monotonic() - started, response

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def test_past_max_in_flight_requests_wait_their_turn_and_503_comes_only_from_the_queue_bounds(faulty):
    before = httpx.get(f"{faulty.url}/metrics").text
    results = post_at_once(faulty, 6)
    # 1 runs, 3 queue, 2 find the queue full; the third in the queue would start after 4.5 s.
    served = [seconds for seconds, response in results if response.status_code == 200]
    refused: dict[str, list[float]] = {}
    for seconds, response in results:
        if response.status_code != 200:
            error = assert_json_error(response, 503, "overloaded")
            assert int(response.headers["retry-after"]) >= 1
            refused.setdefault(error["reason"], []).append(seconds)
    assert len(served) == 3 and sorted(refused) == ["queue_full", "queue_timeout"], (served, refused)
    assert len(refused["queue_full"]) == 2 and max(refused["queue_full"]) < 1.0  # answered at once
    # Refused at the timeout, not when the request would have started.
    assert len(refused["queue_timeout"]) == 1 and 3.5 < refused["queue_timeout"][0] < 4.5
    after = httpx.get(f"{faulty.url}/metrics").text
    for reason, count in (("queue_full", 2), ("queue_timeout", 1)):
        label = f'reason="{reason}"'
        assert metric(after, "landmarks_images_rejected_total", label) == (
            metric(before, "landmarks_images_rejected_total", label) + count
        )
    started = 'outcome="started"'
    assert metric(after, "landmarks_queue_wait_seconds_count", started) == (
        metric(before, "landmarks_queue_wait_seconds_count", started) + 3
    )
    assert metric(after, "landmarks_queue_depth") == 0
    assert post(faulty, image_of_width(fault_widths.SLOW_WIDTH)).status_code == 200  # all free again


def test_a_client_that_disconnects_while_queued_leaves_at_once_and_its_work_never_starts(faulty):
    metrics_url = f"{faulty.url}/metrics"
    decoded_before = metric(
        httpx.get(metrics_url).text, "landmarks_stage_duration_seconds_count", 'stage="decode"'
    )
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(post, faulty, image_of_width(fault_widths.SLOW_WIDTH))
        time.sleep(0.3)  # the slow request holds the only slot
        queued, _ = start_slow_upload(faulty.port, FACE.read_bytes(), 0, "leaves-the-queue")
        wait_for_queue_depth(faulty, 1)
        queued.close()
        time.sleep(0.2)
        # Out of the queue while the slot is still taken, logged as a client-closed request.
        assert running.running()
        assert metric(httpx.get(metrics_url).text, "landmarks_queue_depth") == 0
        logged = [r for r in log_records(faulty.output) if r.get("request_id") == "leaves-the-queue"]
        assert [r["status"] for r in logged if r["message"] == "request"] == [499], logged
        assert running.result().status_code == 200
    time.sleep(0.3)
    text = httpx.get(metrics_url).text
    # Only the slow request was ever decoded: the one that left never started.
    assert metric(text, "landmarks_stage_duration_seconds_count", 'stage="decode"') == decoded_before + 1
    assert metric(text, "landmarks_queue_wait_seconds_count", 'outcome="disconnected"') >= 1


def test_stalled_uploads_hold_no_in_flight_slot(faulty):
    """Clients that open an upload and stop sending must not lock everyone else out with 503s."""
    stalled = [start_slow_upload(faulty.port, FACE.read_bytes())[0] for _ in range(3)]
    try:
        time.sleep(0.3)
        response = post(faulty, FACE.read_bytes())
        assert response.status_code == 200, response.text
    finally:
        for sock in stalled:
            sock.close()


def test_client_vanishing_mid_upload_is_logged_as_499_not_as_a_server_error(faulty):
    sock, _ = start_slow_upload(faulty.port, FACE.read_bytes())
    request_line_sent = time.monotonic()
    time.sleep(0.3)
    sock.close()
    deadline = request_line_sent + 10
    records: list[dict] = []
    while time.monotonic() < deadline:
        records = [r for r in log_records(faulty.output) if r.get("status") == 499]
        if records:
            break
        time.sleep(0.1)
    assert records, "the abandoned request was not logged with status 499"
    request_id = records[-1]["request_id"]
    assert not any(
        r.get("request_id") == request_id and r["level"] == "error" for r in log_records(faulty.output)
    )
    assert_alive_and_serving(faulty, faulty.process.pid)


# --- dlib from many threads ---------------------------------------------------------------------------

CONCURRENT_DETECTION = textwrap.dedent(
    """
    import sys
    import threading

    import numpy as np
    from PIL import Image

    from app.inference.detector import FaceDetector

    THREADS, ROUNDS = 16, 5
    image = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
    detector = FaceDetector()
    expected = detector.detect(image)


    class Watched:
        # Stands in for the dlib object and records how many threads are inside it at once.
        def __init__(self, real):
            self.real, self.inside, self.most = real, 0, 0
            self.lock = threading.Lock()

        def run(self, *args):
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            try:
                return self.real.run(*args)
            finally:
                with self.lock:
                    self.inside -= 1


    watched = detector._detector = Watched(detector._detector)
    barrier = threading.Barrier(THREADS)
    failures = []

    def work():
        for _ in range(ROUNDS):
            barrier.wait()  # every thread calls at the same moment: the case that crashes dlib
            if detector.detect(image) != expected:
                failures.append("different result")

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{len(expected)} faces, {len(failures)} failures, at most {watched.most} thread(s) inside dlib")
    sys.exit(1 if failures or watched.most != 1 else 0)
    """
)


def test_one_detector_called_from_many_threads_at_once_neither_crashes_nor_differs():
    """dlib's detector object segfaults when threads run it at once: the same script calling the bare
    dlib object crashed about one run in four here. FaceDetector serialises the calls; this checks that
    no two threads are ever inside dlib together and that every answer is the single-threaded one. In a
    child process, so that a crash fails this test instead of killing pytest."""
    result = subprocess.run(
        [sys.executable, "-c", CONCURRENT_DETECTION, str(PHOTOS / "2008_002506.jpg")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr[-3000:]}"
    assert "0 failures, at most 1 thread(s) inside dlib" in result.stdout, result.stdout
