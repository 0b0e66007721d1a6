"""Continuous load for scripts/swarm-check.sh, and its per-phase report.

``run``: ``--clients`` concurrent clients post real photos to ``URL/landmarks`` until ``--stop-file``
exists (or ``--max-seconds`` have passed), then write one JSON line per request to ``--out``. A request
is good only if it is answered 200 and every face has 68 finite points, and the same photo gives the same
faces (count, and points within ``TOLERANCE_PX``) whichever replica answered it.

``motion``: a video and a live stream through the load balancer: ``POST URL/landmarks/video`` must
answer line by line (the first frame's line well before the summary: nothing buffers the stream) and
``WebSocket URL/landmarks/stream`` must answer each frame with its tracked face.

``report``: reads those lines and the phases that swarm-check wrote (``name<TAB>start<TAB>converged``,
times in epoch seconds, ``converged`` empty when the phase has no convergence), puts each request in the
phase in which it started (``teardown``: the requests still in flight when it started, as the clients
stop sending then), prints requests, failures, p50 and p99 latency and the convergence time per
phase, and exits 1 if any request failed (or a phase saw none). With ``--lb-log`` (nginx's access log,
JSON lines, matched on the X-Request-ID the clients send) it also counts the requests that nginx sent to
more than one replica, and what the replicas that could not answer them returned.
"""

import argparse
import json
import math
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

TOLERANCE_PX = 1.0
SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm"}


def photos(folders: list[Path]) -> list[tuple[str, bytes]]:
    found = sorted(p for folder in folders for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not found:
        raise SystemExit(f"no photos in {', '.join(map(str, folders))}")
    return [(p.name, p.read_bytes()) for p in found]


def check_answer(response: httpx.Response) -> tuple[list[list[list[float]]] | None, str]:
    """The faces' points of a good answer, or None and what is wrong with it."""
    if response.status_code != 200:
        return None, f"status {response.status_code}: {response.text[:200]}"
    faces = [face["landmarks"] for face in response.json()["faces"]]
    for points in faces:
        if len(points) != 68:
            return None, f"a face with {len(points)} points"
        if not all(len(p) == 2 and all(math.isfinite(v) for v in p) for p in points):
            return None, "a point that is not two finite numbers"
    return faces, ""


class Load:
    def __init__(self, url: str, images: list[tuple[str, bytes]], stop_file: Path, deadline: float) -> None:
        self.url = url.rstrip("/") + "/landmarks"
        self.images = images
        self.stop_file = stop_file
        self.deadline = deadline
        self.records: list[dict] = []
        self.reference: dict[str, list[list[list[float]]]] = {}
        self.lock = threading.Lock()

    def stopped(self) -> bool:
        return time.time() > self.deadline or self.stop_file.exists()

    def client(self, index: int) -> None:
        with httpx.Client(timeout=120) as http:
            turn = index
            while not self.stopped():
                name, body = self.images[turn % len(self.images)]
                request_id = f"swarm-check-{index}-{turn}"
                turn += 1
                start = time.time()
                try:
                    headers = {"X-Request-ID": request_id}
                    response = http.post(self.url, files={"image": (name, body)}, headers=headers)
                    faces, error = check_answer(response)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    faces, error = None, f"{type(exc).__name__}: {exc}"
                end = time.time()
                with self.lock:
                    if faces is not None:
                        error = self.compare(name, faces)
                    record = {"id": request_id, "photo": name, "start": start, "end": end}
                    self.records.append(record | {"ok": not error, "error": error})

    def compare(self, name: str, faces: list[list[list[float]]]) -> str:
        """'' when ``faces`` match the first good answer for this photo, else what differs."""
        reference = self.reference.setdefault(name, faces)
        if len(faces) != len(reference):
            return f"{len(faces)} faces, {len(reference)} before"
        points = [p for face in faces for p in face]
        earlier = [p for face in reference for p in face]
        pairs = zip(points, earlier, strict=True)
        worst = max((abs(a - b) for p, q in pairs for a, b in zip(p, q, strict=True)), default=0.0)
        return f"points moved {worst:.2f} px from an earlier answer" if worst > TOLERANCE_PX else ""


def run(args: argparse.Namespace) -> None:
    load = Load(args.url, photos(args.photos), args.stop_file, time.time() + args.max_seconds)
    threads = [threading.Thread(target=load.client, args=(i,), daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with args.out.open("w") as out:
        for record in sorted(load.records, key=lambda r: r["start"]):
            out.write(json.dumps(record) + "\n")
    print(f"swarm_load: {len(load.records)} requests from {args.clients} clients written to {args.out}")


def lb_attempts(log: Path) -> dict[str, list[str]]:
    """Request id -> the status of each replica nginx tried, in order ("502" also for a refused or
    reset connection, "504" for a timeout), from nginx's JSON access log."""
    attempts = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            attempts[entry["request_id"]] = [s.strip() for s in entry["upstream_status"].split(",")]
    return attempts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else math.nan


def report(args: argparse.Namespace) -> int:
    records = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
    phases = []
    for line in args.phases.read_text().splitlines():
        name, start, converged = line.split("\t")
        phases.append((name, float(start), float(converged) if converged else None))
    bounds = [start for _, start, _ in phases[1:]] + [math.inf]
    tried = lb_attempts(args.lb_log) if args.lb_log else {}
    print(
        f"{'phase':<22} {'requests':>8} {'failed':>6} {'retried':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'converged in':>12}"
    )
    empty = []
    for (name, start, converged), end in zip(phases, bounds, strict=True):
        if name == "teardown":
            inside = [r for r in records if r["end"] > start]
        else:
            inside = [r for r in records if start <= r["start"] < end]
        latencies = [(r["end"] - r["start"]) * 1000 for r in inside]
        failed = [r for r in inside if not r["ok"]]
        if not inside:
            empty.append(name)
        took = f"{converged - start:.1f} s" if converged is not None else "-"
        retried = [tried[r["id"]] for r in inside if len(tried.get(r["id"], [])) > 1]
        print(
            f"{name:<22} {len(inside):>8} {len(failed):>6} {len(retried) if tried else '-':>7} "
            f"{percentile(latencies, 50):>7.0f} {percentile(latencies, 99):>7.0f} {took:>12}"
        )
        if retried:
            answers = Counter(status for statuses in retried for status in statuses[:-1])
            print(f"    retried after: {', '.join(f'{n} x {status}' for status, n in answers.most_common())}")
        for record in failed[:5]:
            print(f"    {record['photo']} at +{record['start'] - start:.1f} s: {record['error']}")
    before = [r for r in records if phases and r["start"] < phases[0][1]]
    latencies = [(r["end"] - r["start"]) * 1000 for r in records]
    failed_all = sum(not r["ok"] for r in records)
    retried_all = sum(len(tried.get(r["id"], [])) > 1 for r in records)
    print(
        f"{'all':<22} {len(records):>8} {failed_all:>6} {retried_all if tried else '-':>7} "
        f"{percentile(latencies, 50):>7.0f} {percentile(latencies, 99):>7.0f}"
    )
    if failed_all or empty or before:
        why = [f"{failed_all} failed requests"] if failed_all else []
        why += [f"no request during {', '.join(empty)}"] if empty else []
        why += [f"{len(before)} requests before the first phase"] if before else []
        print(f"swarm_load: FAILED: {'; '.join(why)}")
        return 1
    return 0


def motion(args: argparse.Namespace) -> int:
    """The video route and the WebSocket through the load balancer (see the module's docstring)."""
    import cv2
    from websockets.sync.client import connect

    started = time.monotonic()
    arrivals: list[tuple[float, dict]] = []
    with (
        open(args.video, "rb") as handle,
        httpx.stream(
            "POST",
            f"{args.url}/landmarks/video",
            params={"max_frames": args.frames},
            files={"video": (args.video.name, handle, "application/octet-stream")},
            timeout=120,
        ) as response,
    ):
        if response.status_code != 200:
            print(f"swarm_load: FAILED: POST /landmarks/video answered {response.status_code}")
            return 1
        arrivals = [(time.monotonic() - started, json.loads(line)) for line in response.iter_lines()]
    frames = [(t, line) for t, line in arrivals if "frame" in line]
    last = arrivals[-1][1] if arrivals else {}
    if len(frames) != args.frames or "summary" not in last or not all(line["faces"] for _, line in frames):
        print(f"swarm_load: FAILED: the video gave {len(frames)} frame lines, last line {last}")
        return 1
    if frames[0][0] > 0.5 * arrivals[-1][0]:
        print(
            f"swarm_load: FAILED: the first frame's line came at {frames[0][0]:.2f} s "
            f"of {arrivals[-1][0]:.2f}"
        )
        return 1
    print(
        f"swarm_load: video through the load balancer: {len(frames)} frames, first line at "
        f"{frames[0][0]:.2f} s, last at {arrivals[-1][0]:.2f} s"
    )
    capture = cv2.VideoCapture(str(args.video))
    answers = []
    with connect(f"{args.url.replace('http', 'ws', 1)}/landmarks/stream", subprotocols=["landmarks"]) as ws:
        for _ in range(3):
            ok, frame = capture.read()
            ws.send(cv2.imencode(".jpg", frame)[1].tobytes())
            answers.append(json.loads(ws.recv(timeout=30)))
    if [len(a.get("faces", [])) for a in answers] != [1, 1, 1]:
        print(f"swarm_load: FAILED: the WebSocket answered {answers}")
        return 1
    print("swarm_load: WebSocket through the load balancer: 3 frames, 3 answers with the face tracked")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="post photos until the stop file exists")
    run_parser.add_argument("--url", required=True, help="the load balancer, e.g. http://127.0.0.1:8000")
    run_parser.add_argument("--photos", type=Path, nargs="+", required=True, help="folders of photos")
    run_parser.add_argument("--clients", type=int, default=8)
    run_parser.add_argument("--stop-file", type=Path, required=True)
    run_parser.add_argument("--max-seconds", type=float, default=900, help="stop by then in any case")
    run_parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per request")
    motion_parser = commands.add_parser("motion", help="a video and a WebSocket stream through the URL")
    motion_parser.add_argument("--url", required=True)
    motion_parser.add_argument("--video", type=Path, required=True, help="a clip with one face")
    motion_parser.add_argument("--frames", type=int, default=120)
    report_parser = commands.add_parser("report", help="per-phase figures; exit 1 on any failed request")
    report_parser.add_argument("--records", type=Path, required=True)
    report_parser.add_argument("--phases", type=Path, required=True)
    report_parser.add_argument("--lb-log", type=Path, help="nginx's access log (docker service logs --raw)")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "motion":
        sys.exit(motion(args))
    else:
        sys.exit(report(args))


if __name__ == "__main__":
    main()
