"""Release a run: its best checkpoint, with release metadata and evaluation figures, copied to models/,
and its networks exported to ONNX beside it (``app.inference.export``: what the service runs)."""

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from app.inference.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from app.inference.export import export_checkpoint
from training.config import ShipConfig


def first_stage_record(checkpoint: str, earlier: LoadedModel, stages_kept: int) -> dict[str, Any]:
    """What a cascade's metadata says (under ``first_stage``) of the stages put before its own."""
    keys = ("name", "version", "trained_on", "split", "training")
    return {
        "checkpoint": checkpoint,
        "stages_kept": stages_kept,
        **{k: earlier.metadata.get(k) for k in keys},
    }


def ship(config: ShipConfig) -> Path:
    """Write ``config.out`` from ``<run>/best.pt`` (or ``--checkpoint``); copy the evaluation's plots
    beside it."""
    run = Path(config.run)
    source = Path(config.checkpoint) if config.checkpoint else run / "best.pt"
    model = load_checkpoint(source)
    metadata = dict(model.metadata)
    metadata.update(
        name=config.name,
        version=config.version,
        flip_test_time=config.flip_test_time,
        shipped=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        run=run.name,
        weights_dtype=config.weights_dtype,
    )
    report = run / "train_report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        data.pop("val_history", None)
        metadata["training_report"] = data
    first = model
    if config.first_stage:
        # The refinement stages frame from any first stage's points: a release may pair them with
        # another (e.g. a smaller) box stage, trained on its own.
        if not model.refinements:
            raise ValueError(f"--first-stage: {source} has no refinement stage to put after it")
        first = load_checkpoint(config.first_stage)
        # The error estimate's calibration and the hard-face threshold were fitted with the other first
        # stage's framing.
        metadata.pop("error_calibration", None)
        metadata.pop("hard_face_flip", None)
        metadata["first_stage"] = first_stage_record(config.first_stage, first, 1)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if config.evaluation:
        summary = json.loads(Path(config.evaluation).read_text())
        metadata["evaluation"] = {
            "threshold": summary["threshold"],
            "detector": summary["detector"],
            "datasets": {
                name: {k: v for k, v in data.items() if k != "plot"}
                for name, data in summary["datasets"].items()
            },
        }
        for data in summary["datasets"].values():
            for key in ("plot", "error_estimate_plot"):
                plot = Path(config.evaluation).parent / data.get(key, "")
                if key in data and plot.is_file():
                    shutil.copyfile(plot, out.parent / plot.name)
    release = dataclasses.replace(first, metadata=metadata, refinements=model.refinements)
    shipped = save_checkpoint(out, release)
    if config.export:
        # What the service runs: the same networks as ONNX graphs, checked against these (export.py).
        export_checkpoint(shipped)
    return shipped
