"""Faults, on real uvicorn processes: a missing or corrupt checkpoint at start, SIGTERM with requests in
flight, exceptions inside detection and the network, overload, clients that stall or vanish, and dlib
called from many threads at once."""

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

from tests.conftest import LFPW, PHOTOS, REPO, SHIPPED_MODEL, LiveServer
from tests.robustness import fault_widths, inputs
from tests.robustness.live import assert_json_error, read_response

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


def run_uvicorn_until_exit(model_path: Path, workers: int, timeout: float = 60.0) -> tuple[int, str]:
    server = LiveServer(env={"LANDMARKS_MODEL_PATH": str(model_path)}, workers=workers)
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


def test_bad_checkpoint_with_two_workers_stops_the_whole_server(tmp_path):
    path, reason = bad_checkpoint("garbage", tmp_path)
    code, output = run_uvicorn_until_exit(path, workers=2)
    errors = [r for r in log_records(output) if r.get("logger") == "app.main" and r["level"] == "error"]
    assert errors and reason in errors[0]["message"], output[-3000:]
    assert "failed to start" in output  # uvicorn's supervisor gives up instead of restarting workers
    if code == 0:
        pytest.xfail(
            "uvicorn's multi-process supervisor exits 0 after a worker fails to start "
            "(see docs/ROBUSTNESS.md: a pre-start check of the checkpoint makes it non-zero)"
        )
    assert code != 0


# --- SIGTERM with requests in flight ------------------------------------------------------------------


def start_slow_upload(port: int, data: bytes) -> tuple[socket.socket, bytes]:
    """Open a landmark request and send all but the last 1000 bytes of its body; returns the socket and
    the rest to send."""
    boundary = "sigterm-boundary"
    body = inputs.multipart_body(boundary, [("image", "face.png", "image/png", data)])
    head = (
        f"POST /landmarks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(head + body[:-1000])
    return sock, body[-1000:]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_in_flight_requests_finish(workers):
    server = LiveServer(workers=workers)
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


# --- Exceptions inside detection and the network, overload, stalled and vanishing clients ------------


@pytest.fixture(scope="module")
def faulty() -> Iterator[LiveServer]:
    server = LiveServer(env={"LANDMARKS_MAX_IN_FLIGHT": "1"}, app="tests.robustness.faulty_app:app")
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


def test_past_max_in_flight_the_service_answers_503_with_retry_after(faulty):
    slow = image_of_width(fault_widths.SLOW_WIDTH)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: post(faulty, slow), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert_json_error(response, 503, "overloaded")
            assert response.headers["retry-after"] == "1"
    assert post(faulty, slow).status_code == 200  # the slot is free again


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
