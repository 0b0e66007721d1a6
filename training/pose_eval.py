"""Head-pose accuracy on AFLW2000-3D: mean absolute error of |yaw| against its labels.

The protocol of Hopenet (Ruiz et al. 2018) and later work: faces with a labelled |yaw| of at most 99
degrees (larger values are label errors). AFLW2000-3D publishes only the absolute yaw for these images
(``abs_yaw.json`` beside the image folder), so the error is ``| |yaw predicted| - |yaw labelled| |``.
Faces are those the service's detector finds, matched to the labelled points as ``evaluate`` does; the
same boxes also go through dlib's 68-point predictor, whose points give the baseline pose.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.inference import Detection, LandmarkPredictor
from app.inference.pose import head_pose
from training.config import PoseEvaluateConfig
from training.folders import labelled_images
from training.split import DEFAULT_SPLIT, checkpoint_split

MAX_ABS_YAW = 99.0


@dataclass
class PoseEvaluation:
    folder: str
    split: str  # "all" or "validation"
    images: int = 0
    unlabelled: int = 0  # images without a yaw label
    over_limit: int = 0  # labelled |yaw| above the limit (left out)
    undetected: int = 0
    stems: list[str] = field(default_factory=list)
    truth: list[float] = field(default_factory=list)  # labelled |yaw| per face
    yaw: dict[str, list[float]] = field(default_factory=dict)  # method -> predicted yaw per face

    def errors(self, method: str) -> np.ndarray:
        return np.abs(np.abs(np.array(self.yaw[method])) - np.array(self.truth))

    def summary(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "split": self.split,
            "images": self.images,
            "unlabelled": self.unlabelled,
            "over_limit": self.over_limit,
            "undetected": self.undetected,
            "faces": len(self.stems),
            "methods": {
                m: {
                    "abs_yaw_mae": float(self.errors(m).mean()) if self.stems else float("nan"),
                    "abs_yaw_median_error": float(np.median(self.errors(m))) if self.stems else float("nan"),
                }
                for m in self.yaw
            },
        }


def evaluate_pose(
    predictor: LandmarkPredictor,
    folder: str | Path,
    *,
    labels: str | Path | None = None,
    validation: tuple[float, str] | None = None,
    baseline: bool = True,
    upsample: int = 0,
    max_abs_yaw: float = MAX_ABS_YAW,
) -> PoseEvaluation:
    """|yaw| error of ``predictor`` (and of dlib's points on the same boxes if ``baseline``) on the
    labelled faces of ``folder``; ``labels`` defaults to ``abs_yaw.json`` beside the folder, a map from
    image file name to |yaw| in degrees. ``validation=(val_fraction, salt)`` keeps the validation split."""
    folder = Path(folder)
    label_path = Path(labels) if labels else folder.parent / "abs_yaw.json"
    abs_yaw: dict[str, float] = json.loads(label_path.read_text())
    dlib_points = None
    if baseline:
        from training.evaluate import DlibShapePredictor

        dlib_points = DlibShapePredictor()
    result = PoseEvaluation(str(folder), "validation" if validation else "all")
    result.yaw = {"ours": []} | ({"dlib": []} if dlib_points else {})
    for item in labelled_images(folder, "validation" if validation else "all", validation or DEFAULT_SPLIT):
        result.images += 1
        truth = abs_yaw.get(item.image.name)
        if truth is None:
            result.unlabelled += 1
            continue
        if truth > max_abs_yaw:
            result.over_limit += 1
            continue
        image = item.decode()
        faces = predictor.predict(image, upsample)
        match = item.match([Detection(f.box, f.score) for f in faces])
        if match is None:
            result.undetected += 1
            continue
        face = next(f for f in faces if f.box == match.box)
        result.stems.append(item.stem)
        result.truth.append(float(truth))
        result.yaw["ours"].append(face.pose.yaw)
        if dlib_points:
            points, _ = dlib_points(image, [face.box])
            result.yaw["dlib"].append(head_pose(points[0]).yaw)
    return result


def markdown_table(evaluation: PoseEvaluation) -> str:
    s = evaluation.summary()
    lines = [
        f"|yaw| error on `{s['folder']}` ({s['split']}): {s['faces']} faces with |yaw| <= {MAX_ABS_YAW:g}, "
        f"{s['undetected']} undetected, {s['over_limit']} over the limit",
        "",
        "| points | faces | mean abs error of abs(yaw) | median |",
        "|---|---:|---:|---:|",
    ]
    for method, m in s["methods"].items():
        lines.append(
            f"| {method} | {s['faces']} | {m['abs_yaw_mae']:.2f} | {m['abs_yaw_median_error']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def run_pose_evaluation(config: PoseEvaluateConfig) -> PoseEvaluation:
    """``face-landmarks-train pose``: the checkpoint's pose accuracy; the summary also as JSON if asked."""
    predictor = LandmarkPredictor.from_checkpoint(config.checkpoint)
    validation = checkpoint_split(predictor.model.metadata)
    evaluation = evaluate_pose(
        predictor,
        config.folder,
        labels=config.labels or None,
        validation=validation if config.validation_only else None,
        baseline=config.baseline,
        upsample=config.upsample,
    )
    if config.out:
        out = Path(config.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(evaluation.summary(), indent=2))
    return evaluation
