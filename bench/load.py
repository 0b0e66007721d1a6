"""``python -m bench.load``: many concurrent clients against real uvicorn processes on loopback, for a
bounded time, with good and bad requests mixed. Not a test: it prints figures, and exits non-zero if a
check fails.

For each worker count (``--workers 1,2``: WEB_CONCURRENCY) it starts the service, waits until every worker
is warm, drives ``--clients`` concurrent keep-alive clients for ``--warmup`` then ``--duration`` seconds,
and checks:

- no 5xx other than the deliberate ``503 overloaded`` (which must carry Retry-After),
- no dropped connection (connect, read or protocol error on the client side),
- every answer has the status its kind of request documents (a good photo 200, a truncated file 400, ...),
- resident memory of the workers after the run exceeds their memory after warm-up by at most
  ``--rss-bound-mib`` per worker.

Then an overload demonstration: one worker with ``--overload-max-in-flight`` slots and
``--overload-clients`` clients, which must produce 503s with Retry-After and no other 5xx.
"""

import argparse
import contextlib
import io
import random
import signal
import struct
import subprocess
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
import psutil
from PIL import Image

from bench.common import DATA, free_port, start_uvicorn

SAMPLES = DATA / "samples"
MiB = 1024 * 1024
BOUNDARY = "load-boundary-5d1c"
UPLOAD_LIMIT = 10 * MiB  # the service's default LANDMARKS_MAX_UPLOAD_BYTES, which this script keeps


# --- Requests -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of request: its prepared body, the status it must get, how often it is sent."""

    name: str
    good: bool
    body: bytes
    content_type: str
    expected: int
    weight: float
    params: dict[str, str] = field(default_factory=dict)


def multipart(payload: bytes, field_name: str = "image", content_type: str = "image/jpeg") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; filename="upload"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header announcing ``width`` x ``height``, with a tiny (bogus) IDAT: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def request_mix(bad_share: float) -> list[Kind]:
    form = f"multipart/form-data; boundary={BOUNDARY}"
    photos = sorted((SAMPLES / "photos").glob("*.jpg")) + sorted((SAMPLES / "lfpw").glob("*.png"))
    if not photos:
        raise SystemExit(f"no sample photos under {SAMPLES}")
    good = [
        Kind(f"photo {p.name}", True, multipart(p.read_bytes()), form, 200, (1 - bad_share) / len(photos))
        for p in photos
    ]
    jpeg = (SAMPLES / "photos" / "2008_002506.jpg").read_bytes()
    rng = np.random.default_rng(0)
    flat = encode(Image.new("RGB", (4000, 4000), (120, 130, 140)), "PNG")
    bad = [
        ("random bytes", multipart(rng.integers(0, 256, 8192, dtype=np.uint8).tobytes()), form, 400, 1, {}),
        ("truncated JPEG", multipart(jpeg[: len(jpeg) // 2]), form, 400, 1, {}),
        ("PNG claiming 30000x30000", multipart(png_claiming(30000, 30000)), form, 413, 1, {}),
        (
            "flat 4000x4000 PNG, upsample=2",
            multipart(flat, content_type="image/png"),
            form,
            413,
            1,
            {"upsample": "2"},
        ),
        ("text as text/plain", multipart(b"hello\n" * 100, content_type="text/plain"), form, 415, 1, {}),
        ("raw JPEG, not multipart", jpeg, "image/jpeg", 415, 1, {}),
        ("missing field", multipart(jpeg, field_name="photo"), form, 422, 1, {}),
        ("upsample=9", multipart(jpeg), form, 422, 1, {"upsample": "9"}),
        ("over the byte limit", multipart(b"\xff" * (UPLOAD_LIMIT + 64 * 1024)), form, 413, 0.2, {}),
    ]
    total = sum(weight for *_, weight, _ in bad)
    return good + [
        Kind(name, False, body, ctype, status, bad_share * weight / total, params)
        for name, body, ctype, status, weight, params in bad
    ]


# --- The service --------------------------------------------------------------------------------------


class Service:
    """``uvicorn app.main:app`` with WEB_CONCURRENCY workers on a loopback port; its log is read as it
    comes (to count the workers that are ready) and otherwise dropped."""

    def __init__(self, workers: int, env: dict[str, str]) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_workers = 0
        self.error_lines: list[str] = []
        self.process = start_uvicorn(
            self.port,
            {"WEB_CONCURRENCY": str(workers), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.process.stdout:
            if '"message": "ready"' in line:
                self.ready_workers += 1
            elif '"level": "error"' in line and len(self.error_lines) < 20:
                self.error_lines.append(line.strip()[:300])

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ready_workers < self.workers:
            if self.process.poll() is not None:
                raise SystemExit(f"uvicorn exited during start-up (status {self.process.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.ready_workers} of {self.workers} workers became ready")
            time.sleep(0.1)

    def worker_rss(self) -> int:
        """Resident memory summed over the processes that serve requests: the single process, or the
        workers of the supervisor (its multiprocessing resource tracker left out)."""
        parent = psutil.Process(self.process.pid)
        if self.workers == 1:
            return parent.memory_info().rss
        total = 0
        for child in parent.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "resource_tracker" not in " ".join(child.cmdline()):
                    total += child.memory_info().rss
        return total

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


# --- Clients ------------------------------------------------------------------------------------------


@dataclass
class Result:
    kind: Kind
    status: int  # 0: the connection failed
    seconds: float
    code: str | None = None
    retry_after: str | None = None
    error: str | None = None

    @property
    def overloaded(self) -> bool:
        """The deliberate 503: too many requests in progress."""
        return self.status == 503 and self.code == "overloaded"


def drive(url: str, kinds: list[Kind], clients: int, seconds: float, seed: int) -> list[Result]:
    """``clients`` threads, each with its own keep-alive connection, sending requests back to back (after
    a 503, once its Retry-After has passed)."""
    results: list[Result] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    weights = [k.weight for k in kinds]

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        mine: list[Result] = []
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < stop_at:
                kind = rng.choices(kinds, weights)[0]
                started = time.perf_counter()
                try:
                    response = http.post(
                        "/landmarks",
                        content=kind.body,
                        params=kind.params,
                        headers={"content-type": kind.content_type},
                    )
                except httpx.TransportError as exc:
                    mine.append(Result(kind, 0, time.perf_counter() - started, error=repr(exc)))
                    continue
                elapsed = time.perf_counter() - started
                code = None
                if response.status_code >= 400:
                    try:
                        code = response.json()["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        code = "not-json"
                retry_after = response.headers.get("retry-after")
                mine.append(Result(kind, response.status_code, elapsed, code, retry_after))
                if response.status_code == 503 and retry_after:
                    # A well-behaved client waits as told (a tight retry loop would measure only 503s).
                    time.sleep(max(0.0, min(float(retry_after), stop_at - time.monotonic())))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- Figures and checks -------------------------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "-"


@dataclass
class Run:
    label: str
    results: list[Result]
    seconds: float
    rss_warm: int | None = None
    rss_after: int | None = None
    rss_bound: int | None = None
    failures: list[str] = field(default_factory=list)

    def check(self, require_overload: bool = False) -> None:
        res = self.results
        dropped = [r for r in res if r.status == 0]
        overloaded = [r for r in res if r.overloaded]
        other_5xx = [r for r in res if r.status >= 500 and not r.overloaded]
        wrong = [r for r in res if r.status > 0 and r.status != r.kind.expected and not r.overloaded]
        if dropped:
            self.failures.append(f"{len(dropped)} dropped connections, e.g. {dropped[0].error}")
        if other_5xx:
            sample = Counter(f"{r.status} {r.code}" for r in other_5xx).most_common(3)
            self.failures.append(f"{len(other_5xx)} 5xx other than 503 overloaded: {sample}")
        if wrong:
            sample = Counter(f"{r.kind.name}: {r.status} {r.code}" for r in wrong).most_common(3)
            self.failures.append(f"{len(wrong)} answers with a status other than documented: {sample}")
        if any(r.retry_after is None for r in overloaded):
            self.failures.append("a 503 overloaded without Retry-After")
        if require_overload and not overloaded:
            self.failures.append("no 503 overloaded although the slots were far fewer than the clients")
        if require_overload and not any(r.status == 200 for r in res):
            self.failures.append("nothing was served during the overload")
        if self.rss_bound is not None and self.rss_after - self.rss_warm > self.rss_bound:
            self.failures.append(
                f"worker memory grew by {(self.rss_after - self.rss_warm) / MiB:.0f} MiB "
                f"(bound {self.rss_bound / MiB:.0f} MiB)"
            )

    def row(self) -> list[str]:
        res = self.results
        statuses = Counter(r.status for r in res)
        good = [r.seconds for r in res if r.kind.good and r.status == 200]
        every = [r.seconds for r in res if r.status]
        overloaded = sum(1 for r in res if r.overloaded)
        other_5xx = sum(1 for r in res if r.status >= 500) - overloaded
        rss = "-"
        if self.rss_warm is not None:
            rss = f"{self.rss_warm / MiB:.0f} -> {self.rss_after / MiB:.0f} (<= +{self.rss_bound / MiB:.0f})"
        return [
            self.label,
            str(len(res)),
            f"{len(res) / self.seconds:.1f}",
            " ".join(f"{s}:{n}" for s, n in sorted(statuses.items()) if s),
            str(overloaded),
            str(other_5xx),
            str(statuses.get(0, 0)),
            f"{ms(good, 50)} / {ms(good, 99)}",
            f"{ms(every, 50)} / {ms(every, 99)}",
            rss,
            "ok" if not self.failures else "FAIL",
        ]


HEADER = [
    "run",
    "requests",
    "req/s",
    "statuses",
    "503 overloaded",
    "other 5xx",
    "dropped",
    "good 200 p50/p99 ms",
    "all p50/p99 ms",
    "worker RSS MiB warm -> after",
    "check",
]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for line in [HEADER, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")


# --- Main ---------------------------------------------------------------------------------------------


def run_load(args: argparse.Namespace, workers: int, kinds: list[Kind]) -> Run:
    env = {"LANDMARKS_MAX_IN_FLIGHT": str(args.max_in_flight)}
    service = Service(workers, env)
    try:
        service.wait_ready()
        drive(service.url, kinds, args.clients, args.warmup, seed=1)
        time.sleep(0.5)
        rss_warm = service.worker_rss()
        started = time.monotonic()
        results = drive(service.url, kinds, args.clients, args.duration, seed=2)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        run = Run(
            f"WEB_CONCURRENCY={workers}",
            results,
            elapsed,
            rss_warm,
            service.worker_rss(),
            args.rss_bound_mib * MiB * workers,
        )
        run.check()
    finally:
        code = service.stop()
    if code not in (0, -signal.SIGTERM):
        run.failures.append(f"uvicorn exited with status {code} after SIGTERM")
    if service.error_lines:
        run.failures.append(f"error log lines, e.g. {service.error_lines[0]}")
    return run


def run_overload(args: argparse.Namespace, kinds: list[Kind]) -> Run:
    service = Service(1, {"LANDMARKS_MAX_IN_FLIGHT": str(args.overload_max_in_flight)})
    try:
        service.wait_ready()
        started = time.monotonic()
        results = drive(service.url, kinds, args.overload_clients, args.overload_duration, seed=3)
        run = Run(
            f"overload: 1 worker, {args.overload_max_in_flight} slots, {args.overload_clients} clients",
            results,
            time.monotonic() - started,
        )
        run.check(require_overload=True)
    finally:
        service.stop()
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of measured load per run")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds of load before measuring memory")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--workers", default="1,2", help="comma-separated WEB_CONCURRENCY values")
    parser.add_argument("--max-in-flight", type=int, default=8, help="LANDMARKS_MAX_IN_FLIGHT of the runs")
    parser.add_argument("--bad-share", type=float, default=0.3, help="share of bad requests in the mix")
    parser.add_argument(
        "--rss-bound-mib", type=float, default=100.0, help="allowed growth of memory per worker after warm-up"
    )
    parser.add_argument("--overload-clients", type=int, default=24)
    parser.add_argument("--overload-max-in-flight", type=int, default=2)
    parser.add_argument("--overload-duration", type=float, default=8.0, help="0 skips the overload run")
    args = parser.parse_args(argv)

    kinds = request_mix(args.bad_share)
    good_only = [k for k in kinds if k.good]
    print(
        f"{args.clients} clients, {args.warmup:.0f} s warm-up + {args.duration:.0f} s per run, "
        f"{args.bad_share:.0%} bad requests of {len(kinds) - len(good_only)} kinds, "
        f"{len(good_only)} sample photos, max_in_flight={args.max_in_flight}",
        flush=True,
    )
    runs = []
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        runs.append(run_load(args, workers, kinds))
        print(f"  {runs[-1].label}: {len(runs[-1].results)} requests", flush=True)
    if args.overload_duration > 0:
        runs.append(run_overload(args, good_only))
    print()
    print_table([run.row() for run in runs])
    failed = [(run.label, failure) for run in runs for failure in run.failures]
    for label, failure in failed:
        print(f"FAIL {label}: {failure}")
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
