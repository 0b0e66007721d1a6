"""Helpers shared by the benchmark scripts: a uvicorn process on a loopback port, RSS, percentiles."""

import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(c) for c in text)
    return children


def start_uvicorn(port: int, env: dict[str, str], **popen: object) -> subprocess.Popen:
    """``uvicorn app.main:app`` on a loopback port, from the repository root."""
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, **popen)  # type: ignore[call-overload]


class Server:
    """``uvicorn app.main:app`` with ``workers`` processes on a free loopback port."""

    def __init__(self, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        child_env = {"WEB_CONCURRENCY": str(workers), "LANDMARKS_LOG_LEVEL": "warning", **(env or {})}
        self.process = start_uvicorn(
            self.port, child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def __enter__(self) -> "Server":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("uvicorn exited during start-up")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    # One worker answered ready; give the others time to finish their warm-up too.
                    time.sleep(2.0 if self.workers > 1 else 0.0)
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("uvicorn did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def worker_rss(self) -> list[int]:
        """RSS of each process that serves requests (the workers, or the single process)."""
        if self.workers == 1:
            return [rss_bytes(self.process.pid)]
        # With several workers uvicorn's supervisor spawns them (and a resource tracker, left out).
        workers = [
            pid
            for pid in child_pids(self.process.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        return [rss_bytes(pid) for pid in workers]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def machine_description() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import dlib
    import torch

    return (
        f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, dlib {dlib.__version__}"
    )


def write_section(path: Path, name: str, lines: list[str]) -> None:
    """Store ``lines`` in the Markdown file ``path`` between the markers of section ``name``, replacing
    that section if the file has it and appending it otherwise: each benchmark script rewrites its own
    figures and leaves the others' alone."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class Report:
    """A benchmark script's Markdown report: printed as it grows and, with ``path``, stored in that file's
    section ``name`` after each part (``write_section``), so an interrupted run keeps what it measured."""

    def __init__(self, name: str, path: Path | None, heading: str, lines: list[str]) -> None:
        self.name, self.path, self.heading = name, path, heading
        self.lines = list(lines)
        print("\n".join(self.lines), flush=True)

    def add(self, lines: list[str]) -> None:
        print("\n".join(lines), flush=True)
        self.lines.extend(lines)
        if self.path:
            write_section(self.path, self.name, self.lines)

    def section(self, title: str, rows: list[str], text: str | None = None) -> None:
        """A part under ``heading`` ``title``: ``text`` (a paragraph), then ``rows`` (a table)."""
        self.add([f"{self.heading} {title}", "", *([text, ""] if text else []), *rows, ""])


def multipart_body(field: str, paths: list[Path]) -> tuple[bytes, str]:
    """A multipart/form-data body with each file in ``field``, and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + path.read_bytes()
        + b"\r\n"
        for path in paths
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
