"""Learning curves: the error of runs trained on nested subsets of one folder (``subset``) against their
number of training faces, the power law ``error = a * faces ** -b`` fitted to them (least squares in
log-log), and how many faces that law says a target error needs.

The law has no floor, so the faces it gives for a target are a lower bound: real curves flatten."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.checkpoint import load_checkpoint


@dataclass(frozen=True)
class CurvePoint:
    faces: int  # training faces of the served head's folders
    error: float
    evaluation: str  # the summary.json it was read from


def training_faces(metadata: dict[str, Any]) -> int:
    """Training faces of the folders labelled in the served head's convention."""
    served = metadata.get("served_head")
    return sum(r["faces_train"] for r in metadata["trained_on"] if r.get("head", served) == served)


def curve_points(evaluations: list[str], dataset: str, metric: str, method: str) -> list[CurvePoint]:
    points = []
    for path in evaluations:
        summary = json.loads(Path(path).read_text())
        faces = training_faces(load_checkpoint(summary["checkpoint"]).metadata)
        try:
            error = summary["datasets"][dataset]["methods"][method][metric]
        except KeyError:
            raise ValueError(f"{path} has no {metric} of {method} on {dataset}") from None
        points.append(CurvePoint(faces, float(error), str(path)))
    return sorted(points, key=lambda p: p.faces)


def fit_power_law(faces: np.ndarray, errors: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``error = a * faces ** -b``."""
    if len(set(faces.tolist())) < 2:
        raise ValueError("a learning curve needs runs on at least two numbers of training faces")
    slope, intercept = np.polyfit(np.log(faces), np.log(errors), 1)
    return float(np.exp(intercept)), float(-slope)


def learning_curve(
    evaluations: list[str], dataset: str, metric: str, method: str, target: float, out: str
) -> dict[str, Any]:
    from training.plots import plot_learning_curve

    points = curve_points(evaluations, dataset, metric, method)
    faces = np.array([p.faces for p in points], dtype=float)
    errors = np.array([p.error for p in points])
    a, b = fit_power_law(faces, errors)
    result: dict[str, Any] = {
        "dataset": dataset,
        "metric": metric,
        "method": method,
        "points": [asdict(p) for p in points],
        "fit": {"a": a, "b": b, "error_per_doubling": 2.0**-b},
    }
    if target > 0:
        result["target"] = target
        result["faces_for_target"] = (a / target) ** (1.0 / b) if b > 0 else None
    if out:
        result["plot"] = str(plot_learning_curve(faces, errors, (a, b), target, out, f"{dataset}, {metric}"))
    return result
