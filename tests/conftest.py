"""Shared fixtures: the real data beside the repo, the shipped model, the app in-process and a real
uvicorn process on a loopback port."""

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PHOTOS = DATA / "samples" / "photos"
LFPW = DATA / "samples" / "lfpw"
# The shipped checkpoint, unless LANDMARKS_MODEL_PATH points elsewhere (as it does for the service).
SHIPPED_MODEL = Settings().model_path


# The slow tier (README, "Tests"): a test that uses one of these fixtures starts a server process or a
# browser, and is marked slow here; modules that start servers themselves carry ``pytestmark``.
SLOW_FIXTURES = frozenset({"live_server", "browser"})
# The test being set up or run: LiveServer refuses to start for a test not marked slow, so that the fast
# tier (make test-fast: -m "not slow") never starts a server process unnoticed.
_current: list[pytest.Item] = []


# In-process tests that each cost seconds of CPU, slow too so that the fast tier stays near a minute on 2
# cores: a module, a test (all its parameters) or one parametrised case.
HEAVY_TESTS = (
    "tests/robustness/test_schema_fuzz.py",  # schemathesis: hundreds of generated requests
    "tests/inference/test_runtime.py::test_serving_a_request_imports_no_torch",  # a fresh interpreter each
    "tests/inference/test_runtime.py::test_the_export_on_each_onnx_runtime_gives_the_torch_answers_on_real_faces",
    "tests/inference/test_checkpoint.py::test_two_processes_saving_one_checkpoint_at_once_both_succeed",
    "tests/inference/test_calibration.py::test_hard_faces_and_only_they_are_averaged_with_their_mirror_image",
    "tests/inference/test_predictor.py::test_the_settings_switch_the_hard_face_flip",
    "tests/api/test_detection_policy.py::test_explicit_upsample_is_honoured[2]",
    "tests/api/test_video.py::test_limits_are_413_with_a_clear_error",
    "tests/inference/test_checkpoint.py::test_half_precision_storage_halves_the_file_and_serves_nearly_the_same_points",
    "tests/inference/test_checkpoint.py::test_a_cascade_serves_the_first_head_and_an_error_estimate",
    "tests/inference/test_runtime.py::test_a_corrupt_graph_or_a_stale_export_is_refused",
    "tests/api/test_detection_policy.py::test_budget_and_detection_limit_are_settings",
    "tests/api/test_health_metrics.py::test_a_second_lifespan_on_the_same_app_becomes_ready_again",
    "tests/inference/test_detector.py::test_auto_budget_is_inclusive_and_counts_what_max_side_leaves",
)


def is_heavy(nodeid: str) -> bool:
    return any(nodeid == t or nodeid.startswith(t + "::") or nodeid.split("[")[0] == t for t in HEAVY_TESTS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or is_heavy(item.nodeid):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _current[:] = [item]


@pytest.fixture(scope="session", autouse=True)
def _require_data() -> None:
    if not DATA.is_dir():
        pytest.exit(f"test data not found at {DATA} (the repo expects ../shared/data beside it)", 2)


@pytest.fixture(scope="session")
def model_path() -> Path:
    assert SHIPPED_MODEL.is_file(), f"the shipped checkpoint {SHIPPED_MODEL} is missing"
    return SHIPPED_MODEL


def exit_codes_at_once(target: Callable[..., None], args: tuple, processes: int = 2) -> list[int | None]:
    """Run ``target(*args)`` in ``processes`` forked processes started together; their exit codes."""
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return [worker.exitcode for worker in workers]


def wait_ready(client: TestClient | httpx.Client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the service did not become ready")


def make_client(**overrides: object) -> TestClient:
    """A TestClient around a fresh app; enter it with ``with`` to run the lifespan."""
    settings = Settings(**{"model_path": SHIPPED_MODEL, **overrides})
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    with make_client() as test_client:
        wait_ready(test_client)
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``uvicorn app.main:app`` (or another ``app``) in a child process on a loopback port; with
    ``launcher``, the production command ``face-landmarks serve`` (which checks the checkpoint first)."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        workers: int = 1,
        app: str = "app.main:app",
        launcher: bool = False,
    ) -> None:
        if _current and _current[0].get_closest_marker("slow") is None:
            raise AssertionError(f"{_current[0].nodeid} starts a server process: mark it slow")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = {**os.environ, "WEB_CONCURRENCY": str(workers), **(env or {})}
        command = ["app.cli", "serve"] if launcher else ["uvicorn", app]
        self.process = subprocess.Popen(
            [sys.executable, "-m", *command, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Drain the log as it comes: a pipe nobody reads fills up (64 KiB) and then blocks the server.
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"uvicorn exited early:\n{self.output}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("uvicorn did not become ready")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        return self.process.returncode, self.output


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = LiveServer()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def assert_same_faces(first: list[dict], second: list[dict]) -> None:
    """The same faces in two answers: the detector's boxes and scores exactly, the network's numbers to
    within what oneDNN's batch-size-dependent kernels change (a few hundredths of a pixel)."""
    assert [(f["box"], f["score"]) for f in first] == [(f["box"], f["score"]) for f in second]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a["landmarks"], b["landmarks"], atol=0.05)
        np.testing.assert_allclose(list(a["pose"].values()), list(b["pose"].values()), atol=0.1)
        assert (a.get("error_estimate") is None) == (b.get("error_estimate") is None)
        if a.get("error_estimate") is not None:
            assert abs(a["error_estimate"] - b["error_estimate"]) < 1e-3
