"""Helpers for tests against a real uvicorn process: resident memory, JSON error checks and an upload
sent slowly, chunk by chunk, over a raw socket."""

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import psutil

if TYPE_CHECKING:
    from tests.conftest import LiveServer

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its children (uvicorn's workers, when there are several)."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


@contextlib.contextmanager
def started(server: "LiveServer") -> Iterator["LiveServer"]:
    """A fixture's body for a server process: ready on entry, stopped cleanly (SIGTERM) on exit."""
    try:
        server.wait_ready()
        yield server
    finally:
        code, output = server.stop()
        assert code in (0, -15), output[-3000:]


class PeakRss:
    """Samples a process's resident memory every 10 ms while the ``with`` block runs: ``.peak``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> "PeakRss":
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict:
    """The documented error shape: status, JSON ``{"error": {code, message, request_id}}``, and the
    request id of the body equal to the ``X-Request-ID`` header."""
    assert response.status_code == status, (
        f"expected {status} {code}, got {response.status_code}: {response.text}"
    )
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    assert error["request_id"] and error["request_id"] == response.headers["x-request-id"]
    return error


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_bytes: int  # payload bytes sent before the answer arrived (or the server closed)
    send_error: str | None = None
    extra: dict = field(default_factory=dict)

    def json(self) -> dict:
        return json.loads(self.body)


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def slow_chunked_upload(
    host: str,
    port: int,
    path: str,
    preamble: bytes,
    chunks: Iterator[bytes],
    content_type: str,
    pause: float = 0.002,
    timeout: float = 30.0,
) -> RawResponse:
    """POST a body with ``Transfer-Encoding: chunked`` (no Content-Length, so the server cannot refuse it
    up front), pausing between chunks and watching for an early answer. Stops sending as soon as the
    server answers or closes, like a careful client; reports how much had been sent by then."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode() + _chunk(preamble))
        sent, send_error = 0, None
        for payload in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the answer (or a close) is already there
            try:
                sock.sendall(_chunk(payload))
            except OSError as exc:  # the server closed its end after answering
                send_error = repr(exc)
                break
            sent += len(payload)
            time.sleep(pause)
        else:
            sock.sendall(b"0\r\n\r\n")
        status, headers, body = read_response(sock, timeout)
        return RawResponse(status, headers, body, sent, send_error)


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
