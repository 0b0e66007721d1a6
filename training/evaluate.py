"""Evaluation through the service's inference path, with dlib's 68-point predictor on the same boxes.

Per face (see ``training.metrics``): NME (box), inter-ocular NME, NME (box) of the 51 inner points and,
where the model gives one, its error estimate. Per set: CED, AUC@0.08, failure rate, mean and median
NME, undetected faces, and how well the error estimate ranks the true NME and flags failures.
"""

import importlib.util
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.inference import Box, FaceDetector, LandmarkPredictor
from app.inference.export import load_model
from training.config import EvaluateConfig
from training.folders import scan_folder
from training.heads import serve_head
from training.metrics import THRESHOLD, nme_box, nme_inner, nme_interocular, summarise
from training.split import DEFAULT_SPLIT, checkpoint_split

logger = logging.getLogger(__name__)


# --- methods ----------------------------------------------------------------------------------------

# (image, boxes, detector scores) -> ((N, 68, 2) points, (N,) error estimates or None)
LandmarkMethod = Callable[[np.ndarray, list[Box], list[float]], tuple[np.ndarray, np.ndarray | None]]


def dlib_predictor_path() -> Path:
    """dlib's 68-point model inside the installed ``face_recognition_models`` (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face_recognition_models is not installed (pip install -e '.[train]')")
    path = (
        Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    )
    if not path.is_file():
        raise FileNotFoundError(f"dlib's 68-point model not found at {path}")
    return path


class DlibShapePredictor:
    """dlib's 68-point ensemble of regression trees; non-commercial licence: comparison only."""

    def __init__(self, path: Path | None = None) -> None:
        import dlib

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(path or dlib_predictor_path()))

    def __call__(
        self, image: np.ndarray, boxes: list[Box], scores: list[float] | None = None
    ) -> tuple[np.ndarray, None]:
        out = []
        for b in boxes:
            shape = self._predictor(image, self._dlib.rectangle(b.left, b.top, b.right, b.bottom))
            out.append([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)])
        return np.array(out, dtype=np.float64).reshape(len(boxes), -1, 2), None


# --- a folder ---------------------------------------------------------------------------------------


@dataclass
class FolderEvaluation:
    name: str
    folder: str
    split: str  # "all" or "validation"
    images: int = 0
    skipped_not_68_points: int = 0
    undetected: list[str] = field(default_factory=list)
    stems: list[str] = field(default_factory=list)
    nme: dict[str, list[float]] = field(default_factory=dict)  # method -> per-face NME (box)
    nme_io: dict[str, list[float]] = field(default_factory=dict)  # method -> per-face inter-ocular NME
    nme_in: dict[str, list[float]] = field(default_factory=dict)  # method -> per-face NME (box), 51 inner
    estimate: dict[str, list[float]] = field(default_factory=dict)  # method -> per-face error estimate
    seconds: dict[str, float] = field(default_factory=dict)  # method -> time spent

    def summary(self, threshold: float = THRESHOLD) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "split": self.split,
            "images": self.images,
            "skipped_not_68_points": self.skipped_not_68_points,
            "undetected": len(self.undetected),
            "methods": {
                m: {
                    **summarise(
                        np.array(self.nme[m]),
                        np.array(self.nme_io[m]),
                        threshold,
                        np.array(self.nme_in[m]),
                        np.array(self.estimate[m]) if self.estimate.get(m) else None,
                    ),
                    "ms_per_face": 1000 * self.seconds[m] / max(1, len(self.nme[m])),
                }
                for m in self.nme
            },
        }


def dataset_name(folder: str | Path, validation_only: bool) -> str:
    parts = Path(folder).resolve().parts[-2:]
    return "-".join(parts) + ("-val" if validation_only else "")


def evaluate_folder(
    folder: str | Path,
    detect: Callable[[np.ndarray], list],
    methods: dict[str, LandmarkMethod],
    *,
    validation: tuple[float, str] | None = None,
) -> FolderEvaluation:
    """Detect in every labelled image, match the face as prepare does, run every method on its box.

    ``validation=(val_fraction, salt)`` keeps only the images of the validation split.
    """
    scan = scan_folder(folder)
    result = FolderEvaluation(
        name=dataset_name(folder, validation is not None),
        folder=str(folder),
        split="validation" if validation else "all",
        skipped_not_68_points=len(scan.skipped_points),
    )
    for per_face in (result.nme, result.nme_io, result.nme_in, result.estimate):
        per_face.update({m: [] for m in methods})
    result.seconds = dict.fromkeys(methods, 0.0)
    for item in scan.labelled("validation" if validation else "all", validation or DEFAULT_SPLIT):
        result.images += 1
        image = item.decode()
        match = item.match(detect(image))
        if match is None:
            result.undetected.append(item.stem)
            continue
        result.stems.append(item.stem)
        for name, method in methods.items():
            started = time.perf_counter()
            points, estimates = method(image, [match.box], [match.score])
            result.seconds[name] += time.perf_counter() - started
            result.nme[name].append(nme_box(points[0], item.points, match.box))
            result.nme_io[name].append(nme_interocular(points[0], item.points))
            result.nme_in[name].append(nme_inner(points[0], item.points, match.box))
            if estimates is not None:
                result.estimate[name].append(float(estimates[0]))
    return result


# --- a checkpoint on several folders ----------------------------------------------------------------


def one_image(predictor: LandmarkPredictor) -> LandmarkMethod:
    """``predictor.estimate`` of one image's boxes, as the evaluation calls its methods."""
    return lambda image, boxes, scores: predictor.estimate([image], [boxes], [scores])[0]


def build_methods(config: EvaluateConfig) -> tuple[LandmarkPredictor, dict[str, LandmarkMethod]]:
    # The served model as served: the ONNX export beside a checkpoint on an ONNX runtime. Another head
    # is selected in the torch checkpoint (then exported in memory by an ONNX runtime).
    model = load_model(config.checkpoint, "torch" if config.head else config.runtime)
    if config.head:
        model = serve_head(model, config.head)
    detector = FaceDetector(on_gray=config.detect_on_gray)
    variants = {
        "checkpoint": [("ours", None)],
        "on": [("ours+flip", True)],
        "off": [("ours", False)],
        "both": [("ours", False), ("ours+flip", True)],
    }[config.flip_test_time]
    methods: dict[str, LandmarkMethod] = {
        name: one_image(LandmarkPredictor(model, detector, flip_test_time=flip, runtime=config.runtime))
        for name, flip in variants
    }
    if config.baseline:
        methods["dlib"] = DlibShapePredictor()
    return LandmarkPredictor(model, detector, runtime=config.runtime), methods


def run_evaluation(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate the checkpoint on every folder; write summary.json, summary.md and one CED plot each."""
    from training.plots import plot_ced, plot_error_estimate

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    predictor, methods = build_methods(config)
    val_fraction, salt = checkpoint_split(predictor.model.metadata)

    def detect(image: np.ndarray) -> list:
        return predictor.detect(image, config.upsample)

    jobs = [(f, None) for f in config.data] + [(f, (val_fraction, salt)) for f in config.val_data]
    if not jobs:
        raise ValueError("nothing to evaluate: give --data and/or --val-data folders")
    summary: dict[str, Any] = {
        "checkpoint": str(config.checkpoint),
        "model": {"name": predictor.name, "version": predictor.version},
        "head": predictor.model.output_config.heads[0],
        "threshold": config.threshold,
        "detector": {"upsample": config.upsample, "on_gray": config.detect_on_gray},
        "split": {"val_fraction": val_fraction, "salt": salt},
        "datasets": {},
    }
    per_face: dict[str, Any] = {}
    for folder, validation in jobs:
        result = evaluate_folder(folder, detect, methods, validation=validation)
        summary["datasets"][result.name] = result.summary(config.threshold)
        per_face[result.name] = {
            "stems": result.stems,
            "undetected": result.undetected,
            "nme_box": result.nme,
            "nme_io": result.nme_io,
            "nme_inner": result.nme_in,
            "error_estimate": result.estimate,
        }
        plot = out / f"ced-{result.name}.png"
        plot_ced(
            {m: np.array(v) for m, v in result.nme.items()},
            plot,
            title=f"{result.name}: {len(result.stems)} faces, {len(result.undetected)} undetected",
            threshold=config.threshold,
        )
        summary["datasets"][result.name]["plot"] = plot.name
        estimated = {m: v for m, v in result.estimate.items() if v}
        if estimated:
            method = next(iter(estimated))
            scatter = out / f"error-estimate-{result.name}.png"
            plot_error_estimate(
                np.array(estimated[method]),
                np.array(result.nme[method]),
                scatter,
                title=f"{result.name}: error estimate of {method}",
                threshold=config.threshold,
            )
            summary["datasets"][result.name]["error_estimate_plot"] = scatter.name
        logger.info("evaluated %s", result.name)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "per_face.json").write_text(json.dumps(per_face))
    (out / "summary.md").write_text(markdown_table(summary))
    return summary


def markdown_table(summary: dict[str, Any]) -> str:
    t = summary["threshold"]
    lines = [
        f"Model `{summary['model']['name']}` {summary['model']['version']} (`{summary['checkpoint']}`), "
        f"{summary['head']} head; "
        f"NME (box) = mean error / sqrt(W x H) of the dlib box; inter-ocular = / outer eye corners.",
        "",
        f"| dataset | method | faces | undetected | NME io mean | AUC@{t} | FR@{t} | NME box mean "
        "| NME box median | NME box, 51 inner | ms/face |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    estimates = []
    for name, data in summary["datasets"].items():
        for method, s in data["methods"].items():
            lines.append(
                f"| {name} | {method} | {s['faces']} | {data['undetected']} | {100 * s['nme_io_mean']:.2f}% "
                f"| {s['auc']:.3f} | {100 * s['failure_rate']:.1f}% | {s['nme_box_mean']:.4f} | "
                f"{s['nme_box_median']:.4f} | {s.get('nme_inner_mean', float('nan')):.4f} | "
                f"{s['ms_per_face']:.1f} |"
            )
            if "estimate_spearman" in s:
                estimates.append(
                    f"| {name} | {method} | {s['estimate_spearman']:.3f} | {s['estimate_roc_auc']:.3f} |"
                )
    if estimates:
        lines += [
            "",
            f"Error estimate against the true NME (box): Spearman correlation, and ROC AUC of flagging "
            f"failures (NME > {t}).",
            "",
            "| dataset | method | Spearman | ROC AUC |",
            "|---|---|---:|---:|",
            *estimates,
        ]
    return "\n".join(lines) + "\n"
