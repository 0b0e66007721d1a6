"""Evaluation through the service's inference path, with dlib's 68-point predictor on the same boxes.

Per face: NME (box) = mean point-to-point error in original pixels / sqrt(W x H) of the dlib box, and
inter-ocular NME = the same error / distance between the outer eye corners (points 36 and 45) of the
ground truth. Per set: CED up to a threshold (0.08), AUC@0.08 = area under the CED from 0 to 0.08
divided by 0.08, failure rate = share of faces with NME > 0.08, mean and median NME, undetected faces.
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
from app.inference.checkpoint import load_checkpoint
from app.inference.imaging import decode_image
from app.inference.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from training.config import EvaluateConfig
from training.data import MAX_PIXELS, is_validation, match_detection, scan_folder

logger = logging.getLogger(__name__)

THRESHOLD = 0.08


# --- metrics ----------------------------------------------------------------------------------------


def point_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(..., 68) point-to-point distances."""
    return np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64), axis=-1)


def nme_box(pred: np.ndarray, truth: np.ndarray, box: Box) -> float:
    """Mean point-to-point error divided by sqrt(width x height) of the box."""
    return float(point_errors(pred, truth).mean() / np.sqrt(box.width * box.height))


def nme_interocular(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point-to-point error divided by the ground-truth outer-eye-corner distance (36, 45)."""
    truth = np.asarray(truth, dtype=np.float64)
    return float(
        point_errors(pred, truth).mean() / np.linalg.norm(truth[LEFT_EYE_OUTER] - truth[RIGHT_EYE_OUTER])
    )


def ced(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: share of faces with error <= each threshold."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    if errors.size == 0:
        return np.zeros(len(thresholds))
    return np.searchsorted(errors, thresholds, side="right") / errors.size


def auc(errors: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold`` (0..1), computed exactly:
    a face with error e contributes max(0, threshold - e) to the area."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return float("nan")
    return float(np.clip(threshold - errors, 0.0, None).mean() / threshold)


def failure_rate(errors: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Share of faces with error > ``threshold``."""
    errors = np.asarray(errors, dtype=np.float64)
    return float((errors > threshold).mean()) if errors.size else float("nan")


def summarise(nme: np.ndarray, nme_io: np.ndarray, threshold: float = THRESHOLD) -> dict[str, float]:
    nme, nme_io = np.asarray(nme), np.asarray(nme_io)
    empty = nme.size == 0
    return {
        "faces": int(nme.size),
        "auc": auc(nme, threshold),
        "failure_rate": failure_rate(nme, threshold),
        "nme_box_mean": float("nan") if empty else float(nme.mean()),
        "nme_box_median": float("nan") if empty else float(np.median(nme)),
        "nme_io_mean": float("nan") if empty else float(nme_io.mean()),
        "nme_io_median": float("nan") if empty else float(np.median(nme_io)),
    }


# --- methods ----------------------------------------------------------------------------------------

LandmarkMethod = Callable[[np.ndarray, list[Box]], np.ndarray]


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

    def __call__(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        out = []
        for b in boxes:
            shape = self._predictor(image, self._dlib.rectangle(b.left, b.top, b.right, b.bottom))
            out.append([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)])
        return np.array(out, dtype=np.float64).reshape(len(boxes), -1, 2)


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
                    **summarise(np.array(self.nme[m]), np.array(self.nme_io[m]), threshold),
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
    result.nme = {m: [] for m in methods}
    result.nme_io = {m: [] for m in methods}
    result.seconds = dict.fromkeys(methods, 0.0)
    for item in scan.images:
        if validation is not None and not is_validation(item.stem, *validation):
            continue
        result.images += 1
        image = decode_image(item.image.read_bytes(), MAX_PIXELS)
        match = match_detection(detect(image), item.points)
        if match is None:
            result.undetected.append(item.stem)
            continue
        result.stems.append(item.stem)
        for name, method in methods.items():
            started = time.perf_counter()
            pred = method(image, [match.box])[0]
            result.seconds[name] += time.perf_counter() - started
            result.nme[name].append(nme_box(pred, item.points, match.box))
            result.nme_io[name].append(nme_interocular(pred, item.points))
    return result


# --- a checkpoint on several folders ----------------------------------------------------------------


def build_methods(config: EvaluateConfig) -> tuple[LandmarkPredictor, dict[str, LandmarkMethod]]:
    model = load_checkpoint(config.checkpoint)
    detector = FaceDetector(on_gray=config.detect_on_gray)
    variants = {
        "checkpoint": [("ours", None)],
        "on": [("ours+flip", True)],
        "off": [("ours", False)],
        "both": [("ours", False), ("ours+flip", True)],
    }[config.flip_test_time]
    methods: dict[str, LandmarkMethod] = {
        name: LandmarkPredictor(model, detector, flip_test_time=flip).landmarks_for_boxes
        for name, flip in variants
    }
    if config.baseline:
        methods["dlib"] = DlibShapePredictor()
    return LandmarkPredictor(model, detector), methods


def run_evaluation(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate the checkpoint on every folder; write summary.json, summary.md and one CED plot each."""
    from training.plots import plot_ced

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    predictor, methods = build_methods(config)
    split = predictor.model.metadata.get("split", {})
    val_fraction = float(split.get("val_fraction", 0.15))
    salt = str(split.get("salt", "face-landmarks-split-v1"))

    def detect(image: np.ndarray) -> list:
        return predictor.detect(image, config.upsample)

    jobs = [(f, None) for f in config.data] + [(f, (val_fraction, salt)) for f in config.val_data]
    if not jobs:
        raise ValueError("nothing to evaluate: give --data and/or --val-data folders")
    summary: dict[str, Any] = {
        "checkpoint": str(config.checkpoint),
        "model": {"name": predictor.name, "version": predictor.version},
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
        }
        plot = out / f"ced-{result.name}.png"
        plot_ced(
            {m: np.array(v) for m, v in result.nme.items()},
            plot,
            title=f"{result.name}: {len(result.stems)} faces, {len(result.undetected)} undetected",
            threshold=config.threshold,
        )
        summary["datasets"][result.name]["plot"] = plot.name
        logger.info("evaluated %s", result.name)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "per_face.json").write_text(json.dumps(per_face))
    (out / "summary.md").write_text(markdown_table(summary))
    return summary


def markdown_table(summary: dict[str, Any]) -> str:
    t = summary["threshold"]
    lines = [
        f"Model `{summary['model']['name']}` {summary['model']['version']} (`{summary['checkpoint']}`); "
        f"NME (box) = mean error / sqrt(W x H) of the dlib box; inter-ocular = / outer eye corners.",
        "",
        f"| dataset | method | faces | undetected | AUC@{t} | FR@{t} | NME box mean | NME box median "
        "| NME io mean | ms/face |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, data in summary["datasets"].items():
        for method, s in data["methods"].items():
            lines.append(
                f"| {name} | {method} | {s['faces']} | {data['undetected']} | {s['auc']:.3f} | "
                f"{100 * s['failure_rate']:.1f}% | {s['nme_box_mean']:.4f} | {s['nme_box_median']:.4f} | "
                f"{s['nme_io_mean']:.4f} | {s['ms_per_face']:.1f} |"
            )
    return "\n".join(lines) + "\n"
