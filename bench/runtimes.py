"""``python -m bench.runtimes``: the network runtimes against each other, one thread each, as a worker
runs them (docs/PERFORMANCE.md, "Runtime").

1. Per crop, each stage's network alone on random standardised crops, at batch 1, 8 (the predictor's
   chunk) and 24: ONNX Runtime under each graph-optimisation level and execution mode, OpenVINO under
   the latency and throughput hints, and the traced torch graph the service ran before the export.
2. The request path's network part (crops + both stages + flip of hard faces, ``LandmarkPredictor.faces``
   on detected boxes) on a one-face and a 24-face photo, per runtime.

Everything is interleaved round by round; medians. Needs the train extra (torch) for the torch rows and
openvino (dev extra) for its rows.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from app.inference import FaceDetector, LandmarkPredictor
from app.inference.export import OnnxGraph, load_export, load_model, manifest_path
from app.inference.imaging import decode_image
from app.inference.runtime import OnnxRuntimeNetwork, OpenVinoNetwork, TorchNetwork
from bench.common import DATA

CHECKPOINT = "models/landmarks.pt"
PHOTOS = {1: DATA / "samples/photos/Tom_Cruise_avp_2014_4.jpg", 24: DATA / "samples/photos/bald_guys.jpg"}


def onnxruntime_variants(graph: OnnxGraph) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    modes = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for level_name, level in levels.items():
        for mode_name, mode in modes.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            options.graph_optimization_level, options.execution_mode = level, mode
            session = ort.InferenceSession(graph.data, options, providers=["CPUExecutionProvider"])
            variants[f"onnxruntime {level_name}, {mode_name}"] = lambda batch, session=session: session.run(
                None, {"crops": batch}
            )[0]
    variants["onnxruntime as served"] = OnnxRuntimeNetwork(graph, threads=1)
    return variants


def openvino_variants(graph: OnnxGraph) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import openvino as ov

    core = ov.Core()
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for hint in ("LATENCY", "THROUGHPUT"):
        config = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": hint}
        request = core.compile_model(core.read_model(graph.data, b""), "CPU", config).create_infer_request()
        name = f"openvino {hint.lower()} hint"
        variants[name] = lambda batch, request=request: request.infer({0: batch})[0]
    variants["openvino as served"] = OpenVinoNetwork(graph, threads=1)
    return variants


def per_crop(rounds: int) -> list[str]:
    """Markdown rows: ms per crop of each stage's network at batch 1, 8, 24, per runtime setting."""
    checkpoint = load_model(CHECKPOINT, "torch")
    export = load_export(manifest_path(CHECKPOINT))
    rng = np.random.default_rng(0)
    rows = ["| stage | runtime, settings | batch 1 | batch 8 | batch 24 |", "|---|---|---|---|---|"]
    for number, (torch_stage, stage) in enumerate(zip(checkpoint.stages, export.stages, strict=True), 1):
        size = stage.config.input_size
        runners = {
            **onnxruntime_variants(stage.network),
            **openvino_variants(stage.network),
            "torch traced + fused": TorchNetwork(torch_stage.network, size, 3, threads=1, optimise=True),
        }
        cells: dict[str, list[str]] = {name: [] for name in runners}
        for batch_size in (1, 8, 24):
            batch = rng.standard_normal((batch_size, 3, size, size), dtype=np.float32)
            times: dict[str, list[float]] = {name: [] for name in runners}
            for run in runners.values():
                run(batch)
            for _ in range(rounds * (4 if batch_size == 1 else 1)):
                for name, run in runners.items():
                    started = time.perf_counter()
                    run(batch)
                    times[name].append(time.perf_counter() - started)
            for name in runners:
                cells[name].append(f"{statistics.median(times[name]) * 1000 / batch_size:.3f}")
        rows += [f"| {number} | {name} | {' | '.join(values)} |" for name, values in cells.items()]
    return rows


def request_path(rounds: int) -> list[str]:
    """Markdown rows: ms of ``faces`` (crops, both stages, hard-face flips) per photo and runtime."""
    detector = FaceDetector()
    predictors = {
        runtime: LandmarkPredictor(load_model(CHECKPOINT, runtime), detector, runtime=runtime, threads=1)
        for runtime in ("onnxruntime", "openvino", "torch")
    }
    rows = ["| faces | " + " | ".join(predictors) + " |", "|---|" + "---|" * len(predictors)]
    for faces, path in PHOTOS.items():
        image = decode_image(path.read_bytes(), 10**8)
        detections = detector.detect(image, 1 if faces == 1 else 0)
        assert len(detections) == faces, f"{path.name}: {len(detections)} faces"
        times: dict[str, list[float]] = {name: [] for name in predictors}
        for predictor in predictors.values():
            predictor.faces([image], [detections])
        for _ in range(rounds):
            for name, predictor in predictors.items():
                started = time.perf_counter()
                predictor.faces([image], [detections])
                times[name].append(time.perf_counter() - started)
        medians = [f"{statistics.median(times[name]) * 1000:.1f} ms" for name in predictors]
        rows.append(f"| {faces} ({path.name}) | " + " | ".join(medians) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds per measurement")
    args = parser.parse_args(argv)
    print("Per crop, ms (each stage's network alone, one thread, medians):\n")
    print("\n".join(per_crop(args.rounds)), flush=True)
    print("\nRequest path's network part, ms (crops + both stages + hard-face flips, one thread):\n")
    print("\n".join(request_path(args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
