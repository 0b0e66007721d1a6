"""Fit the error estimate's calibration on the training split's faces (``app.inference.calibration``).

Every labelled face of the training split of each folder (the checkpoint's split rule) goes through the
service's detector and predictor; the least-squares fit of log(true NME) on the error head's estimate,
the detector score and the box size is written into the checkpoint's metadata, with the threshold of
the hard-face flip (``--hard-face-quantile`` of the same faces' raw estimates). The validation faces,
on which ``evaluate`` judges the estimate, are never used.
"""

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from app.inference import FaceDetector, LandmarkPredictor
from app.inference.calibration import ErrorCalibration
from app.inference.checkpoint import load_checkpoint, save_checkpoint
from app.inference.export import export_checkpoint, manifest_path
from training.config import CalibrateConfig
from training.folders import labelled_images
from training.metrics import nme_box, spearman
from training.split import checkpoint_split

logger = logging.getLogger(__name__)


def run_calibration(config: CalibrateConfig) -> dict[str, Any]:
    if not config.data:
        raise ValueError("no folders given (--data FOLDER ...): the ones the checkpoint was trained on")
    if not 0.0 < config.hard_face_quantile <= 1.0:
        raise ValueError(f"--hard-face-quantile {config.hard_face_quantile}: a quantile in (0, 1]")
    model = load_checkpoint(config.checkpoint)
    if not model.output_config.error_head:
        raise ValueError(f"{config.checkpoint} has no error head: there is no estimate to calibrate")
    detector = FaceDetector(on_gray=config.detect_on_gray)
    # The raw estimate of the network's own first pass: what both the calibration and the threshold read.
    predictor = LandmarkPredictor(
        model, detector, flip_test_time=False, flip_hard_faces=False, calibrate_error=False
    )
    split = checkpoint_split(model.metadata)
    raw, scores, sides, truth = [], [], [], []
    for folder in config.data:
        for item in labelled_images(folder, "training", split):
            image = item.decode()
            match = item.match(predictor.detect(image, config.upsample))
            if match is None:
                continue
            ((points, estimate),) = predictor.estimate([image], [[match.box]])
            assert estimate is not None
            raw.append(float(estimate[0]))
            scores.append(match.score)
            sides.append(float(np.sqrt(match.box.width * match.box.height)))
            truth.append(nme_box(points[0], item.points, match.box))
    if len(truth) < 10:
        raise ValueError(f"only {len(truth)} training faces found: too few to fit the calibration")
    inputs = (np.array(raw), np.array(scores), np.array(sides))
    true_nme = np.array(truth)
    calibration = ErrorCalibration.fit(*inputs, true_nme)
    record = {
        **calibration.to_dict(),
        "fitted_on": list(config.data),
        "split": "training",
        "faces": len(truth),
        "spearman_training_raw": round(spearman(true_nme, inputs[0]), 4),
        "spearman_training_calibrated": round(spearman(true_nme, calibration.apply(*inputs)), 4),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    hard_face_flip = {
        "estimate_above": round(float(np.quantile(inputs[0], config.hard_face_quantile)), 6),
        "quantile": config.hard_face_quantile,
        "fitted_on": list(config.data),
        "split": "training",
        "faces": len(truth),
    }
    out = Path(config.out or config.checkpoint)
    metadata = {**model.metadata, "error_calibration": record, "hard_face_flip": hard_face_flip}
    save_checkpoint(out, dataclasses.replace(model, metadata=metadata))
    if manifest_path(out).is_file():  # a released model: its export carries the metadata too
        export_checkpoint(out)
    logger.info("calibration of %s on %d training faces -> %s", config.checkpoint, len(truth), out)
    return {"checkpoint": str(out), "error_calibration": record, "hard_face_flip": hard_face_flip}
