"""``python -m bench.load``: many concurrent clients against real uvicorn processes on loopback, for a
bounded time, sending the sample photos (and, with ``--bad-share``, bad requests mixed in). Not a test: it
prints figures, and exits non-zero if a check fails.

For each worker count (``--workers 1,2``: WEB_CONCURRENCY) and each value of ``--max-in-flight`` it starts
the service, waits until every worker is warm, and then for each client count (``--clients 16,64,256``)
drives that many concurrent keep-alive clients for ``--warmup`` then ``--duration`` seconds. It checks:

- up to ``--all-served-up-to`` clients (64), every request is answered as its kind documents: every good
  photo 200, no 503 at all (load is queued, not refused);
- past it, a 503 only as ``overloaded`` from the admission queue's bounds (reason ``queue_full`` or
  ``queue_timeout``), always with Retry-After; no other 5xx;
- no dropped connection (connect, read or protocol error on the client side);
- resident memory of the workers, sampled during the run, exceeds their memory after the first warm-up by
  at most ``--rss-bound-mib`` per worker.
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

    reason: str | None = None

    @property
    def overloaded(self) -> bool:
        """The deliberate 503 of the admission queue's bounds."""
        return self.status == 503 and self.code == "overloaded"


def drive(url: str, kinds: list[Kind], clients: int, seconds: float, seed: int) -> tuple[list[Result], float]:
    """``clients`` threads, each with its own keep-alive connection, sending requests back to back (after
    a 503, once its Retry-After has passed) for ``seconds`` from the moment all are ready; the results and
    the seconds from that moment until the last answer."""
    results: list[Result] = []
    lock = threading.Lock()
    window: list[float] = []  # [start, stop], set once every client has built its connection pool
    weights = [k.weight for k in kinds]
    # Building an httpx client costs tens of milliseconds (its TLS context): 256 of them would eat the
    # first seconds of the run, so the clock starts when all are built.
    all_ready = threading.Barrier(clients, action=lambda: window.extend([time.monotonic()] * 2))

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        mine: list[Result] = []
        with httpx.Client(base_url=url, timeout=120) as http:
            all_ready.wait()
            stop_at = window[0] + seconds
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
                code = reason = None
                if response.status_code >= 400:
                    try:
                        error = response.json()["error"]
                        code, reason = error["code"], error.get("reason")
                    except (ValueError, KeyError, TypeError):
                        code = "not-json"
                retry_after = response.headers.get("retry-after")
                mine.append(Result(kind, response.status_code, elapsed, code, retry_after, reason=reason))
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
    return results, time.monotonic() - window[0]


# --- Figures and checks -------------------------------------------------------------------------------

QUEUE_BOUNDS = ("queue_full", "queue_timeout")


def ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "-"


@dataclass
class Run:
    label: str
    results: list[Result]
    seconds: float
    rss_warm: int
    rss_peak: int
    rss_bound: int
    all_served: bool  # at this load every request must be served: no 503 at all
    failures: list[str] = field(default_factory=list)

    def check(self) -> None:
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
        if self.all_served and overloaded:
            self.failures.append(f"{len(overloaded)} requests refused (503) at a load the queue should hold")
        if any(r.reason not in QUEUE_BOUNDS for r in overloaded):
            self.failures.append("a 503 overloaded whose reason is not a queue bound")
        if any(r.retry_after is None for r in overloaded):
            self.failures.append("a 503 overloaded without Retry-After")
        if not any(r.status == 200 for r in res):
            self.failures.append("nothing was served")
        if self.rss_peak - self.rss_warm > self.rss_bound:
            self.failures.append(
                f"worker memory grew by {(self.rss_peak - self.rss_warm) / MiB:.0f} MiB "
                f"(bound {self.rss_bound / MiB:.0f} MiB)"
            )

    def row(self) -> list[str]:
        res = self.results
        statuses = Counter(r.status for r in res)
        good = [r.seconds for r in res if r.kind.good and r.status == 200]
        every = [r.seconds for r in res if r.status]
        reasons = Counter(r.reason for r in res if r.overloaded)
        other_5xx = sum(1 for r in res if r.status >= 500 and not r.overloaded)
        retry_after = [int(r.retry_after) for r in res if r.overloaded and r.retry_after]
        return [
            self.label,
            str(len(res)),
            f"{len(res) / self.seconds:.1f}",
            " ".join(f"{s}:{n}" for s, n in sorted(statuses.items()) if s),
            " / ".join(str(reasons.get(reason, 0)) for reason in QUEUE_BOUNDS),
            f"{min(retry_after)}-{max(retry_after)}" if retry_after else "-",
            str(other_5xx),
            str(statuses.get(0, 0)),
            f"{ms(good, 50)} / {ms(good, 99)}",
            f"{ms(every, 50)} / {ms(every, 99)}",
            f"{self.rss_warm / MiB:.0f} -> {self.rss_peak / MiB:.0f} (<= +{self.rss_bound / MiB:.0f})",
            "ok" if not self.failures else "FAIL",
        ]


HEADER = [
    "run",
    "requests",
    "req/s",
    "statuses",
    "503 queue_full / queue_timeout",
    "Retry-After s",
    "other 5xx",
    "dropped",
    "good 200 p50/p99 ms",
    "all p50/p99 ms",
    "worker RSS MiB warm -> peak",
    "check",
]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for line in [HEADER, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")


# --- Main ---------------------------------------------------------------------------------------------


class PeakRss:
    """Samples the workers' resident memory every 0.2 s while it is entered; ``peak`` is the highest."""

    def __init__(self, service: Service) -> None:
        self.service, self.peak = service, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.service.worker_rss())
            self._stop.wait(0.2)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.service.worker_rss())


def run_service(args: argparse.Namespace, workers: int, max_in_flight: str, kinds: list[Kind]) -> list[Run]:
    """One service; each client count in turn, each after its own warm-up."""
    env = {}
    if max_in_flight:
        env["LANDMARKS_MAX_IN_FLIGHT"] = max_in_flight
    if args.max_queue:
        env["LANDMARKS_MAX_QUEUE"] = args.max_queue
    service = Service(workers, env)
    runs: list[Run] = []
    slots = f", {max_in_flight} running" if max_in_flight else ""
    try:
        service.wait_ready()
        rss_warm = None
        for clients in [int(c) for c in args.clients.split(",") if c.strip()]:
            drive(service.url, kinds, clients, args.warmup, seed=clients)
            if rss_warm is None:
                time.sleep(0.5)
                rss_warm = service.worker_rss()
            with PeakRss(service) as rss:
                results, elapsed = drive(service.url, kinds, clients, args.duration, seed=clients + 1)
            label = f"{workers} worker{'s' if workers > 1 else ''}{slots}, {clients} clients"
            run = Run(
                label,
                results,
                elapsed,
                rss_warm,
                rss.peak,
                int(args.rss_bound_mib * MiB * workers),
                all_served=clients <= args.all_served_up_to,
            )
            run.check()
            runs.append(run)
            print(f"  {label}: {len(results)} requests, {'ok' if not run.failures else 'FAIL'}", flush=True)
    finally:
        code = service.stop()
    if runs and code not in (0, -signal.SIGTERM):
        runs[-1].failures.append(f"uvicorn exited with status {code} after SIGTERM")
    if runs and service.error_lines:
        runs[-1].failures.append(f"error log lines, e.g. {service.error_lines[0]}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of measured load per run")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds of load before each run")
    parser.add_argument("--clients", default="16,64,256", help="comma-separated concurrent client counts")
    parser.add_argument("--workers", default="1,2", help="comma-separated WEB_CONCURRENCY values")
    parser.add_argument(
        "--max-in-flight",
        default="",
        help="comma-separated LANDMARKS_MAX_IN_FLIGHT values to compare (default: the service's)",
    )
    parser.add_argument("--max-queue", default="", help="LANDMARKS_MAX_QUEUE (default: the service's)")
    parser.add_argument(
        "--all-served-up-to", type=int, default=64, help="up to this many clients, no 503 is allowed"
    )
    parser.add_argument("--bad-share", type=float, default=0.0, help="share of bad requests in the mix")
    parser.add_argument(
        "--rss-bound-mib", type=float, default=100.0, help="allowed growth of memory per worker after warm-up"
    )
    args = parser.parse_args(argv)

    kinds = request_mix(args.bad_share)
    if args.bad_share == 0:
        kinds = [k for k in kinds if k.good]
    good = sum(k.good for k in kinds)
    print(
        f"clients {args.clients}, {args.warmup:.0f} s warm-up + {args.duration:.0f} s per run, "
        f"{args.bad_share:.0%} bad requests of {len(kinds) - good} kinds, {good} sample photos",
        flush=True,
    )
    runs = []
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        for max_in_flight in [m.strip() for m in args.max_in_flight.split(",")]:
            runs.extend(run_service(args, workers, max_in_flight, kinds))
    print()
    print_table([run.row() for run in runs])
    failed = [(run.label, failure) for run in runs for failure in run.failures]
    for label, failure in failed:
        print(f"FAIL {label}: {failure}")
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
