"""``python -m bench.run`` (or ``make bench``): the request path measured against raw dlib.

The yardstick is what a user would do without the service: decode with OpenCV, dlib's HOG detector and
dlib's 68-point predictor, in their own process, at the upsampling the service's default policy used for
the same photo (its response says which). Everything is measured in one run, interleaved, as
medians over repeats. ``--write docs/PERFORMANCE.md`` stores the report.
"""

import argparse
import http.client
import importlib.util
import json
import threading
import time
from pathlib import Path

import cv2
import dlib
import numpy as np
import torch

from app.config import Settings, build_predictor
from app.inference import LandmarkPredictor
from app.inference.imaging import decode_image
from bench import batch
from bench.common import DATA, Report, Server, machine_description, multipart_body, percentile

ONE_FACE = DATA / "samples" / "photos" / "Tom_Cruise_avp_2014_4.jpg"
GROUP = DATA / "samples" / "photos" / "bald_guys.jpg"
STAGE_PHOTOS = [
    ONE_FACE,
    DATA / "samples" / "lfpw" / "image_0001.png",
    GROUP,
    DATA / "samples/photos/dogs.jpg",
]


def dlib_shape_predictor() -> dlib.shape_predictor:
    """dlib's 68-point model from face-recognition-models, found without importing that package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the train extra (face-recognition-models) for the dlib baseline")
    path = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    return dlib.shape_predictor(str(path))


class RawDlib:
    """Decode + detect + 68-point predictor, as a user would write it."""

    def __init__(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib_shape_predictor()

    def __call__(self, data: bytes, upsample: int = 0) -> list[np.ndarray]:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        shapes = [self.shape_predictor(rgb, rect) for rect in self.detector(rgb, upsample)]
        return [np.array([(p.x, p.y) for p in shape.parts()]) for shape in shapes]


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def multipart(path: Path) -> tuple[bytes, str]:
    return multipart_body("image", [path])


class Client:
    """An HTTP/1.1 client with a pre-built body: as little client CPU as possible.

    With ``keep_alive=False`` every request opens a new connection, as requests from many users do:
    uvicorn's workers share one listening socket, and a kept-alive connection stays with the worker that
    accepted it (two clients could both be served by one worker while the other idles).
    """

    def __init__(self, port: int, path: Path, keep_alive: bool = True) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.body, self.content_type = multipart(path)
        self.headers = {"Content-Type": self.content_type}
        if not keep_alive:
            self.headers["Connection"] = "close"

    def post(self) -> dict:
        """The response body of one request (the service's default detection policy)."""
        self.connection.request("POST", "/landmarks", body=self.body, headers=self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        return json.loads(payload)


def stage_times(predictor: LandmarkPredictor, repeats: int) -> list[str]:
    rows = [
        "| photo | size | upsampling | faces | decode | detect | crop+regress | encode JSON | total |",
        "|---" * 9 + "|",
    ]
    samples: dict[Path, list[list[float]]] = {p: [] for p in STAGE_PHOTOS}
    settings = Settings()
    policy = settings.default_upsample
    for _ in range(repeats):
        for path in STAGE_PHOTOS:  # interleaved
            data = path.read_bytes()
            t0 = time.perf_counter()
            image = decode_image(data, settings.max_pixels)
            t1 = time.perf_counter()
            detections = predictor.detect(image, policy)
            t2 = time.perf_counter()
            ((points, _),) = predictor.estimate([image], [[d.box for d in detections]])
            t3 = time.perf_counter()
            json.dumps([{"landmarks": np.round(p, 2).tolist()} for p in points])
            t4 = time.perf_counter()
            samples[path].append([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0])
            faces = len(detections)
            level = predictor.detector.resolve_upsample(image.shape[1], image.shape[0], policy)
            shape = f"{image.shape[1]}x{image.shape[0]} | {level}"
            samples[path][-1].append(faces)
            samples[path][-1].append(shape)  # type: ignore[arg-type]
    for path, values in samples.items():
        medians = np.median(np.array([v[:5] for v in values]), axis=0)
        faces, shape = values[0][5], values[0][6]
        rows.append(f"| {path.name} | {shape} | {faces} | " + " | ".join(ms(m) for m in medians) + " |")
    return rows


def per_face(predictor: LandmarkPredictor, repeats: int) -> tuple[list[str], float]:
    image = decode_image(GROUP.read_bytes(), 10**9)
    boxes = [d.box for d in predictor.detect(image, 0)]
    shape_predictor = dlib_shape_predictor()
    rects = [dlib.rectangle(b.left, b.top, b.right, b.bottom) for b in boxes]

    def ours(n: int) -> None:
        predictor.estimate([image], [boxes[:n]])

    def theirs(n: int) -> None:
        for rect in rects[:n]:
            shape_predictor(image, rect)

    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for n in (1, len(boxes)):
            for name, fn in (("ours", ours), ("dlib", theirs)):
                results.setdefault((name, n), []).append(timed(fn, n) / n)
    rows = [
        "| faces per image | our crop + network, per face | dlib 68-point predictor, per face | ratio |",
        "|---|---|---|---|",
    ]
    ratio_all = 0.0
    for n in (1, len(boxes)):
        ours_ms, dlib_ms = np.median(results[("ours", n)]), np.median(results[("dlib", n)])
        ratio_all = ours_ms / dlib_ms
        rows.append(f"| {n} | {ms(ours_ms)} ms | {ms(dlib_ms)} ms | {ratio_all:.2f}x |")
    return rows, ratio_all


def http_vs_raw(repeats: int) -> tuple[list[str], dict[str, float]]:
    raw = RawDlib()
    latencies: dict[tuple[str, str], list[float]] = {}
    with Server(workers=1) as server:
        clients = {path: Client(server.port, path) for path in (ONE_FACE, GROUP)}
        # The first request warms the connection and says which upsampling the default policy uses.
        levels = {path: client.post()["detection"]["upsample"] for path, client in clients.items()}
        for _ in range(repeats):
            for path, client in clients.items():
                data = path.read_bytes()
                latencies.setdefault((path.name, "service"), []).append(timed(client.post))
                latencies.setdefault((path.name, "raw"), []).append(timed(raw, data, levels[path]))
    rows = [
        "| photo | upsampling (both) | service over HTTP p50 | p99 | raw dlib in-process p50 | p99 | "
        "p50 ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = {}
    for path in (ONE_FACE, GROUP):
        ours, theirs = latencies[(path.name, "service")], latencies[(path.name, "raw")]
        ratio = percentile(ours, 50) / percentile(theirs, 50)
        ratios[path.name] = ratio
        rows.append(
            f"| {path.name} | {levels[path]} | {ms(percentile(ours, 50))} ms | "
            f"{ms(percentile(ours, 99))} ms | "
            f"{ms(percentile(theirs, 50))} ms | {ms(percentile(theirs, 99))} ms | {ratio:.2f}x |"
        )
    return rows, ratios


def drive(clients: list[Client], seconds: float) -> tuple[float, list[float]]:
    """Each client posts back-to-back for ``seconds``; requests per second and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(client: Client) -> None:
        while time.perf_counter() < deadline:
            elapsed = timed(client.post)
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - started), latencies


def throughput(seconds: float) -> tuple[list[str], float, list[str]]:
    rows = ["| workers | clients | requests/s | p50 | p99 |", "|---|---|---|---|---|"]
    memory = ["| workers | RSS per worker after warm-up | after the throughput runs |", "|---|---|---|"]
    rates: dict[tuple[int, int], float] = {}
    for workers in (1, 2):
        with Server(workers=workers) as server:
            warm = server.worker_rss()
            for n_clients in (1, 2, 4):
                clients = [Client(server.port, ONE_FACE, keep_alive=False) for _ in range(n_clients)]
                for client in clients:
                    client.post()
                rate, latencies = drive(clients, seconds)
                rates[(workers, n_clients)] = rate
                rows.append(
                    f"| {workers} | {n_clients} | {rate:.1f} | {ms(percentile(latencies, 50))} ms | "
                    f"{ms(percentile(latencies, 99))} ms |"
                )
            after = server.worker_rss()
            memory.append(
                f"| {workers} | {', '.join(f'{r / 2**20:.0f} MiB' for r in warm)} | "
                f"{', '.join(f'{r / 2**20:.0f} MiB' for r in after)} |"
            )
    return rows, rates[(2, 2)] / rates[(2, 1)], memory


def flip_policy(predictor: LandmarkPredictor) -> str:
    if predictor.flip_test_time:
        return "on"
    if predictor.hard_face_flip is not None:
        return f"on faces whose raw error estimate passes {predictor.hard_face_flip:.4f}"
    return "off"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30, help="repeats for medians and percentiles")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    parser.add_argument("--write", type=Path, help="also write the report to this Markdown file")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    settings = Settings()
    predictor = build_predictor(settings)
    predictor.warm_up()

    header = [
        "# Performance",
        "",
        "Measured with `make bench` "
        f"(`python -m bench.run --repeats {args.repeats} --seconds {args.seconds:g}`) "
        f"on {time.strftime('%Y-%m-%d')}.",
        "",
        f"Machine: {machine_description()}. Service defaults: one torch thread per worker, detection on "
        f"grayscale, flip test-time averaging {flip_policy(predictor)}, "
        f"checkpoint {predictor.name} {predictor.version}.",
        "",
        "## Per stage, in-process, single thread (medians, ms)",
        "",
    ]
    report = Report("bench.run", args.write, "##", header)
    report.add([*stage_times(predictor, args.repeats), ""])
    face_rows, face_ratio = per_face(predictor, args.repeats)
    report.section("Per face: our network against dlib's 68-point predictor on the same boxes", face_rows)
    http_rows, ratios = http_vs_raw(args.repeats)
    report.section("End to end: the service over HTTP (1 worker) against raw dlib in-process", http_rows)
    tp_rows, scaling, memory = throughput(args.seconds)
    report.section(f"Throughput, {ONE_FACE.name}, a new connection per request", tp_rows)
    report.section("Memory", memory)
    report.section(batch.TITLE, batch.section(args.repeats))

    checks = [
        (
            "one-face photo p50 <= 1.2x raw dlib (same upsampling)",
            ratios[ONE_FACE.name],
            ratios[ONE_FACE.name] <= 1.2,
        ),
        (
            "24-face photo p50 <= 1.0x raw dlib (same upsampling)",
            ratios[GROUP.name],
            ratios[GROUP.name] <= 1.0,
        ),
        ("2 clients / 2 workers >= 1.6x one client", scaling, scaling >= 1.6),
        ("per-face network time <= dlib predictor", face_ratio, face_ratio <= 1.0),
    ]
    report.section(
        "Targets",
        ["| target | measured | met |", "|---|---|---|"]
        + [f"| {name} | {value:.2f}x | {'yes' if ok else 'NO'} |" for name, value, ok in checks],
    )
    if args.write:
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()
