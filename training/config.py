"""Every option of every training command, typed, with its default and its --help text beside it.

The command line is generated from these dataclasses (``add_arguments`` / ``from_arguments``): one
option per field, ``--field-name``, whose help is the field's ``option(default, help)``. The training run
prints its :class:`TrainConfig` at start and stores it in the checkpoint metadata.
"""

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from training.split import SPLIT_SALT, VAL_FRACTION


def option(default: Any, help: str, *, positional: bool = False) -> Any:
    """A config field with its --help text (a list default is copied for each instance); ``positional``
    makes it an argument without a flag."""
    metadata = {"help": help, "positional": positional}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


LossName = Literal["l2", "wing", "smooth_l1"]
StageName = Literal["box", "landmarks"]


@dataclass
class PrepareConfig:
    """How faces are found and cached (the detector must match the service's defaults)."""

    cache: str = option("cache", "folder of the per-dataset caches (git-ignored)")
    upsample: int = option(
        0, "the detector's upsampling level for the training boxes (the service's auto picks 0 from 0.5 MP)"
    )
    detect_on_gray: bool = option(True, "detect on a grayscale copy, as the service's FaceDetector() does")
    margin: float = option(0.35, "the cached patch extends this fraction of the box size beyond each side")
    cache_box_size: int = option(
        256, "largest box side kept in a cached patch (larger boxes are reduced to it)"
    )
    rebuild: bool = option(False, "ignore an existing cache and scan the folder again")


@dataclass
class PrepareFoldersConfig:
    """The prepare command: the folders, and how their faces are found and cached."""

    folders: list[str] = option([], "folders of images with .pts files beside them", positional=True)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)


@dataclass
class AugmentConfig:
    """One random similarity transform of the whole image (as a jittered Frame) plus photometric changes."""

    flip: float = option(0.5, "probability of a horizontal flip (points permuted with FLIP_PERMUTATION)")
    rotation: float = option(20.0, "rotation, uniform in +-degrees")
    scale: float = option(0.1, "box size multiplied by exp(uniform(+-scale))")
    shift: float = option(0.08, "box centre moved by uniform(+-shift) x box size, in x and y independently")
    brightness: float = option(0.2, "added brightness, uniform in +-(fraction of 255)")
    contrast: float = option(0.3, "contrast multiplied by uniform(1 +- contrast)")
    colour: float = option(0.1, "per-channel gain uniform(1 +- colour)")
    grayscale: float = option(0.1, "probability of turning the crop gray")
    blur: float = option(0.15, "probability of a Gaussian blur")
    blur_sigma: float = option(1.2, "largest blur sigma in crop pixels")
    occlusion: float = option(0.0, "probability of painting a random rectangle of one colour over the crop")
    occlusion_size: float = option(0.4, "largest side of that rectangle, as a fraction of the crop side")


@dataclass
class ModelConfig:
    """The ONet variant (see app.inference.model.ONetConfig)."""

    channels: tuple[int, int, int, int] = option(
        (32, 64, 64, 128), "output channels of the four convolutions"
    )
    fc_features: int = option(256, "width of the fully connected layer")
    batch_norm: bool = option(True, "BatchNorm after each convolution")
    dropout: float = option(0.0, "dropout before the landmark layer")
    init_mean_shape: bool = option(True, "start the last layer's bias at the training mean shape")
    error_head: bool = option(
        True, "also learn to predict the network's own error (served as error_estimate)"
    )


@dataclass
class TrainConfig:
    """A training run: data, split, model, loss, optimiser, schedule, augmentation, hardware."""

    data: list[str] = option([], "folders of images + .pts to train on")
    heads: list[str] = option([], "label convention of each --data folder; first = served")
    share_inner: bool = option(
        True, "the served head also learns the 51 inner points of other conventions' faces"
    )
    stage: StageName = option("box", "box: first stage on the detector's box; landmarks: a refinement stage")
    first_stage: str = option("", "for --stage landmarks: checkpoint of the stages that come before this one")
    first_stages: int = option(
        0, "for --stage landmarks: keep only the first N stages of --first-stage (0 = all)"
    )
    init: str = option(
        "", "start from the weights and statistics of this checkpoint's last stage (a warm restart)"
    )
    error_loss_weight: float = option(1.0, "weight of the error head's loss (it reads detached features)")
    name: str = option("onet", "run name: outputs go to <runs>/<name>")
    runs: str = option("runs", "parent folder of run folders (git-ignored)")
    version: str = option("0.0.0", "model version written into the checkpoint metadata")
    seed: int = option(0, "seeds torch, numpy and the augmentation: a CPU run is repeatable")
    val_fraction: float = option(VAL_FRACTION, "fraction of images (by stem hash) held out for validation")
    split_salt: str = option(SPLIT_SALT, "salt of the stem hash that assigns the split")
    epochs: int = option(200, "passes over the training faces")
    batch_size: int = option(64, "faces per optimiser step (per device)")
    lr: float = option(3e-3, "peak AdamW learning rate")
    weight_decay: float = option(1e-4, "AdamW decoupled weight decay (weights only, not biases/norms)")
    warmup_epochs: float = option(2.0, "linear warm-up from 0 to lr")
    min_lr_ratio: float = option(0.01, "cosine decay ends at lr x this")
    loss: LossName = option("wing", "l2 (MTCNN's Euclidean loss), wing (Feng et al. 2018) or smooth_l1")
    wing_width: float = option(10.0, "wing w, in crop pixels")
    wing_curvature: float = option(2.0, "wing epsilon, in crop pixels")
    smooth_l1_beta: float = option(1.0, "smooth-L1 beta, in crop pixels")
    input_size: int = option(62, "network input side")
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    num_workers: int = option(0, "DataLoader workers (0 = in the training process; best on 2 cores)")
    threads: int = option(
        0, "torch intra-op threads (0 = torch's default); 1 is steadier on a shared 2-core box"
    )
    accelerator: str = option("auto", "Lightning accelerator: auto, cpu, gpu, ...")
    devices: str = option("auto", "Lightning devices: auto, a count, or a comma list of ids")
    num_nodes: int = option(1, "Lightning nodes")
    strategy: str = option("auto", "Lightning strategy: auto, ddp, ddp_spawn, ...")
    precision: str = option("32-true", "Lightning precision, e.g. 16-mixed on a GPU")
    log_every_n_steps: int = option(5, "CSV log frequency (optimiser steps)")
    progress_bar: bool = option(True, "show Lightning's progress bar")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def describe(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass
class EvaluateConfig:
    """Evaluation of a checkpoint through app.inference.LandmarkPredictor."""

    checkpoint: str = option("models/landmarks.pt", "checkpoint to evaluate")
    data: list[str] = option([], "folders evaluated in full (e.g. held-out sets)")
    val_data: list[str] = option([], "folders restricted to the validation split")
    out: str = option("runs/eval", "output folder: summary.json, summary.md, one ced-<dataset>.png each")
    flip_test_time: Literal["checkpoint", "on", "off", "both"] = option(
        "both", "which variants of ours to run"
    )
    baseline: bool = option(True, "also run dlib's 68-point predictor on the same boxes")
    upsample: int = option(0, "the detector's upsampling level (0: the level the networks were trained on)")
    detect_on_gray: bool = option(True, "as the service's FaceDetector()")
    threshold: float = option(0.08, "CED range / AUC / failure threshold on NME (box)")
    head: str = option(
        "", "read this head of the last stage (e.g. aflw2000), not the served one: a measurement"
    )
    runtime: Literal["onnxruntime", "openvino", "torch"] = option(
        "onnxruntime", "what runs the networks (onnxruntime: the service's; torch: the checkpoint's)"
    )


@dataclass
class PoseEvaluateConfig:
    """Head-pose accuracy (|yaw| error) of a checkpoint on AFLW2000-3D, vs dlib's points."""

    checkpoint: str = option("models/landmarks.pt", "checkpoint to evaluate")
    folder: str = option("../shared/data/aflw2000/train", "AFLW2000-3D images with .pts files")
    labels: str = option("", "|yaw| per image file name (JSON); default: abs_yaw.json beside the folder")
    validation_only: bool = option(True, "only the validation split (the checkpoint's split rule)")
    baseline: bool = option(True, "also the pose from dlib's 68-point predictor on the same boxes")
    upsample: int = option(0, "the detector's upsampling level (0: the level the networks were trained on)")
    out: str = option("", "also write the summary as JSON here (optional)")


@dataclass
class CalibrateConfig:
    """Fit the error estimate's calibration (app.inference.calibration) on the training split's faces."""

    checkpoint: str = option("models/landmarks.pt", "checkpoint whose error estimate is calibrated")
    data: list[str] = option([], "folders it was trained on (their training split is used)")
    out: str = option("", "where the calibrated checkpoint goes (default: over --checkpoint)")
    hard_face_quantile: float = option(
        0.9, "threshold of the hard-face flip (metadata hard_face_flip): this quantile of the raw estimates"
    )
    upsample: int = option(0, "the detector's upsampling level (0: the level the networks were trained on)")
    detect_on_gray: bool = option(True, "as the service's FaceDetector()")


@dataclass
class OnetInitConfig:
    """A refinement stage (for train --init) whose trunk is MTCNN's trained ONet (training/onet_init.py)."""

    weights: str = option("", "MTCNN's ONet state dict (facenet_pytorch/data/onet.pt)")
    first_stage: str = option(
        "models/landmarks.pt", "its first stage goes in the file too (train --init reads the last)"
    )
    data: str = option("../shared/data/300w/train", "BatchNorm is set on stage-2 crops of its training split")
    faces: int = option(600, "how many of those faces")
    heads: list[str] = option(["300w", "aflw2000"], "landmark heads, served first")
    error_head: bool = option(True, "as train's --error-head")
    out: str = option("runs/onet-init.pt", "the checkpoint to pass to train --init")
    seed: int = option(0, "seeds the fresh layers")
    val_fraction: float = option(VAL_FRACTION, "the split rule of train (validation faces are not used)")
    split_salt: str = option(
        SPLIT_SALT, "salt of the stem hash that assigns the split (as train --split-salt)"
    )


@dataclass
class SubsetConfig:
    """A folder of symlinks to part of a labelled folder: every validation image and a seeded fraction of
    the training images (learning curves: how the error falls with the number of training faces)."""

    folder: str = option("", "labelled folder (images + .pts) to draw from")
    fraction: float = option(
        0.5, "share of its training-split images kept (the validation split is kept whole)"
    )
    out: str = option("", "new folder of symlinks (it must not exist yet)")
    seed: int = option(
        0, "seeds the draw; the kept images of a smaller fraction are among those of a larger one"
    )
    val_fraction: float = option(
        VAL_FRACTION, "fraction of images held out for validation (as train --val-fraction)"
    )
    split_salt: str = option(
        SPLIT_SALT, "salt of the stem hash that assigns the split (as train --split-salt)"
    )


@dataclass
class CurveConfig:
    """A learning curve from the evaluations (summary.json) of runs trained on nested subsets."""

    evaluations: list[str] = option([], "summary.json of each run's evaluation")
    dataset: str = option("300w-helen_test", "dataset name in the summaries")
    metric: str = option("nme_io_mean", "figure of the summaries to fit (nme_io_mean, nme_box_mean, ...)")
    method: str = option("ours", "method in the summaries")
    target: float = option(0.0, "also say how many training faces the fitted law needs for this error")
    out: str = option("", "also plot the curve to this PNG")


@dataclass
class ShipConfig:
    """Copy a run's best checkpoint to models/ with release metadata."""

    run: str = option("runs/onet", "run folder holding best.pt")
    checkpoint: str = option("", "release this checkpoint instead of <run>/best.pt (e.g. a calibrated one)")
    evaluation: str = option("", "summary.json of `evaluate` to embed (optional)")
    out: str = option("models/landmarks.pt", "where the shipped checkpoint goes")
    version: str = option("1.0.0", "release version")
    name: str = option("onet-68", "release name")
    flip_test_time: bool = option(False, "the predictor's default for this checkpoint")
    first_stage: str = option(
        "", "put this checkpoint's first (box) stage in front of the run's refinement stages"
    )
    weights_dtype: Literal["float32", "float16"] = option("float32", "weights as stored (served in float32)")
    export: bool = option(True, "export the stages to ONNX beside it (what the service runs, without torch)")


@dataclass
class ExportConfig:
    """Export a checkpoint's stages to ONNX beside it, with the manifest the service loads without torch."""

    checkpoint: str = option(
        "models/landmarks.pt", "checkpoint to export (writes <stem>.json, <stem>.stageN.onnx)"
    )


@dataclass
class MeanFaceConfig:
    """The 68-point 3D mean face that app.inference.pose solves head pose against (training/mean_face.py)."""

    folder: str = option("", "folder of images with 68-point .pts files, many poses", positional=True)
    part: Literal["training", "validation", "all"] = option(
        "training", "which of its images: a side of the split, or all"
    )
    val_fraction: float = option(
        VAL_FRACTION, "fraction of images held out for validation (as train --val-fraction)"
    )
    split_salt: str = option(
        SPLIT_SALT, "salt of the stem hash that assigns the split (as train --split-salt)"
    )


# --- command line generation --------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of ``cls`` (nested dataclasses flattened, their names kept unique), its help
    from the field's ``option``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            add_arguments(parser, kind)
            continue
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if f.metadata.get("positional"):
            nargs = "+" if origin is list else None
            parser.add_argument(f.name, nargs=nargs, type=args[0] if args else kind, help=f.metadata["help"])
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        options: dict[str, Any] = {
            "help": f"{f.metadata['help']} (default: {default})",
            "default": argparse.SUPPRESS,
        }
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            options["choices"] = list(args)
        elif origin in (list, tuple):
            options["nargs"] = "+" if origin is list else len(args)
            options["type"] = args[0]
        else:
            options["type"] = kind
        parser.add_argument(_flag(f.name), dest=f.name, **options)


def from_arguments(cls: type, namespace: argparse.Namespace) -> Any:
    """Build ``cls`` from parsed options; fields not given keep their defaults."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    given = vars(namespace)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = from_arguments(kind, namespace)
        elif f.name in given and given[f.name] is not None:
            value = given[f.name]
            values[f.name] = tuple(value) if typing.get_origin(kind) is tuple else value
    return cls(**values)
