"""Every hyper-parameter of prepare / train / evaluate, typed, with a default and a one-line comment.

The command line is generated from these dataclasses (``add_arguments`` / ``from_arguments``), the
training run prints its :class:`TrainConfig` at start and stores it in the checkpoint metadata.
"""

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

LossName = Literal["l2", "wing", "smooth_l1"]
StageName = Literal["box", "landmarks"]


@dataclass
class PrepareConfig:
    """How faces are found and cached (the detector must match the service's defaults)."""

    cache: str = "cache"  # folder of the per-dataset caches (git-ignored)
    upsample: int = 0  # dlib upsampling of the training boxes (auto serves 0 on photos of 0.5 MP and up)
    detect_on_gray: bool = True  # detect on a grayscale copy, as the service's FaceDetector() does
    margin: float = 0.35  # the cached patch extends this fraction of the box size beyond each side
    cache_box_size: int = 256  # largest box side kept in a cached patch (larger boxes are reduced to it)
    rebuild: bool = False  # ignore an existing cache and scan the folder again


@dataclass
class AugmentConfig:
    """One random similarity transform of the whole image (as a jittered Frame) plus photometric changes."""

    flip: float = 0.5  # probability of a horizontal flip (points permuted with FLIP_PERMUTATION)
    rotation: float = 20.0  # rotation, uniform in +-degrees
    scale: float = 0.1  # box size multiplied by exp(uniform(+-scale))
    shift: float = 0.08  # box centre moved by uniform(+-shift) x box size, in x and y independently
    brightness: float = 0.2  # added brightness, uniform in +-(fraction of 255)
    contrast: float = 0.3  # contrast multiplied by uniform(1 +- contrast)
    colour: float = 0.1  # per-channel gain uniform(1 +- colour)
    grayscale: float = 0.1  # probability of turning the crop gray
    blur: float = 0.15  # probability of a Gaussian blur
    blur_sigma: float = 1.2  # largest blur sigma in crop pixels
    occlusion: float = 0.0  # probability of painting a random rectangle of one colour over the crop
    occlusion_size: float = 0.4  # largest side of that rectangle, as a fraction of the crop side


@dataclass
class ModelConfig:
    """The ONet variant (see app.inference.model.ONetConfig)."""

    channels: tuple[int, int, int, int] = (32, 64, 64, 128)  # output channels of the four convolutions
    fc_features: int = 256  # width of the fully connected layer
    batch_norm: bool = True  # BatchNorm after each convolution
    dropout: float = 0.0  # dropout before the landmark layer
    init_mean_shape: bool = True  # start the last layer's bias at the training mean shape
    error_head: bool = True  # also learn to predict the network's own error (served as error_estimate)


@dataclass
class TrainConfig:
    """A training run: data, split, model, loss, optimiser, schedule, augmentation, hardware."""

    data: list[str] = field(default_factory=list)  # folders of images + .pts to train on
    heads: list[str] = field(default_factory=list)  # label convention of each --data folder; first = served
    share_inner: bool = True  # the served head also learns the 51 inner points of other conventions' faces
    stage: StageName = "box"  # box: first stage on the detector's box; landmarks: a refinement stage
    first_stage: str = ""  # for --stage landmarks: checkpoint of the stages that come before this one
    first_stages: int = 0  # for --stage landmarks: keep only the first N stages of --first-stage (0 = all)
    init: str = ""  # start from the weights and statistics of this checkpoint's last stage (a warm restart)
    error_loss_weight: float = 1.0  # weight of the error head's loss (it reads detached features)
    name: str = "onet"  # run name: outputs go to <runs>/<name>
    runs: str = "runs"  # parent folder of run folders (git-ignored)
    version: str = "0.0.0"  # model version written into the checkpoint metadata
    seed: int = 0  # seeds torch, numpy and the augmentation: a CPU run is repeatable
    val_fraction: float = 0.15  # fraction of images (by stem hash) held out for validation
    split_salt: str = "face-landmarks-split-v1"  # salt of the stem hash that assigns the split
    epochs: int = 200  # passes over the training faces
    batch_size: int = 64  # faces per optimiser step (per device)
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay (weights only, not biases/norms)
    warmup_epochs: float = 2.0  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.01  # cosine decay ends at lr x this
    loss: LossName = "wing"  # l2 (MTCNN's Euclidean loss), wing (Feng et al. 2018) or smooth_l1
    wing_width: float = 10.0  # wing w, in crop pixels
    wing_curvature: float = 2.0  # wing epsilon, in crop pixels
    smooth_l1_beta: float = 1.0  # smooth-L1 beta, in crop pixels
    input_size: int = 62  # network input side
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    num_workers: int = 0  # DataLoader workers (0 = in the training process; best on 2 cores)
    threads: int = 0  # torch intra-op threads (0 = torch's default); 1 is steadier on a shared 2-core box
    accelerator: str = "auto"  # Lightning accelerator: auto, cpu, gpu, ...
    devices: str = "auto"  # Lightning devices: auto, a count, or a comma list of ids
    num_nodes: int = 1  # Lightning nodes
    strategy: str = "auto"  # Lightning strategy: auto, ddp, ddp_spawn, ...
    precision: str = "32-true"  # Lightning precision, e.g. 16-mixed on a GPU
    log_every_n_steps: int = 5  # CSV log frequency (optimiser steps)
    progress_bar: bool = True  # show Lightning's progress bar

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def describe(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass
class EvaluateConfig:
    """Evaluation of a checkpoint through app.inference.LandmarkPredictor."""

    checkpoint: str = "models/landmarks.pt"  # checkpoint to evaluate
    data: list[str] = field(default_factory=list)  # folders evaluated in full (e.g. held-out sets)
    val_data: list[str] = field(default_factory=list)  # folders restricted to the validation split
    out: str = "runs/eval"  # output folder: summary.json, summary.md, one ced-<dataset>.png each
    flip_test_time: Literal["checkpoint", "on", "off", "both"] = "both"  # which variants of ours to run
    baseline: bool = True  # also run dlib's 68-point predictor on the same boxes
    upsample: int = 0  # dlib upsampling of the detector (0: the level the networks were trained on)
    detect_on_gray: bool = True  # as the service's FaceDetector()
    threshold: float = 0.08  # CED range / AUC / failure threshold on NME (box)
    head: str = ""  # read this head of the last stage (e.g. aflw2000), not the served one: a measurement


@dataclass
class PoseEvaluateConfig:
    """Head-pose accuracy (|yaw| error) of a checkpoint on AFLW2000-3D, vs dlib's points."""

    checkpoint: str = "models/landmarks.pt"  # checkpoint to evaluate
    folder: str = "../shared/data/aflw2000/train"  # AFLW2000-3D images with .pts files
    labels: str = ""  # |yaw| per image file name (JSON); default: abs_yaw.json beside the folder
    validation_only: bool = True  # only the validation split (the checkpoint's split rule)
    baseline: bool = True  # also the pose from dlib's 68-point predictor on the same boxes
    upsample: int = 0  # dlib upsampling of the detector (0: the level the networks were trained on)
    out: str = ""  # also write the summary as JSON here (optional)


@dataclass
class CalibrateConfig:
    """Fit the error estimate's calibration (app.inference.calibration) on the training split's faces."""

    checkpoint: str = "models/landmarks.pt"  # checkpoint whose error estimate is calibrated
    data: list[str] = field(default_factory=list)  # folders it was trained on (their training split is used)
    out: str = ""  # where the calibrated checkpoint goes (default: over --checkpoint)
    hard_face_quantile: float = 0.9  # flip-average faces whose raw estimate passes this training quantile
    upsample: int = 0  # dlib upsampling of the detector (0: the level the networks were trained on)
    detect_on_gray: bool = True  # as the service's FaceDetector()


@dataclass
class OnetInitConfig:
    """A refinement stage (for train --init) whose trunk is MTCNN's trained ONet (training/onet_init.py)."""

    weights: str = ""  # MTCNN's ONet state dict (facenet_pytorch/data/onet.pt)
    first_stage: str = (
        "models/landmarks.pt"  # its first stage goes in the file too (train --init reads the last)
    )
    data: str = "../shared/data/300w/train"  # BatchNorm is set on stage-2 crops of its training split
    faces: int = 600  # how many of those faces
    heads: list[str] = field(default_factory=lambda: ["300w", "aflw2000"])  # landmark heads, served first
    error_head: bool = True  # as train's --error-head
    out: str = "runs/onet-init.pt"  # the checkpoint to pass to train --init
    seed: int = 0  # seeds the fresh layers
    val_fraction: float = 0.15  # the split rule of train (validation faces are not used)
    split_salt: str = "face-landmarks-split-v1"


@dataclass
class SubsetConfig:
    """A folder of symlinks to part of a labelled folder: every validation image and a seeded fraction of
    the training images (learning curves: how the error falls with the number of training faces)."""

    folder: str = ""  # labelled folder (images + .pts) to draw from
    fraction: float = 0.5  # share of its training-split images kept (the validation split is kept whole)
    out: str = ""  # new folder of symlinks (it must not exist yet)
    seed: int = 0  # seeds the draw; the kept images of a smaller fraction are among those of a larger one
    val_fraction: float = 0.15  # the split rule of train --val-fraction / --split-salt
    split_salt: str = "face-landmarks-split-v1"


@dataclass
class CurveConfig:
    """A learning curve from the evaluations (summary.json) of runs trained on nested subsets."""

    evaluations: list[str] = field(default_factory=list)  # summary.json of each run's evaluation
    dataset: str = "300w-helen_test"  # dataset name in the summaries
    metric: str = "nme_io_mean"  # figure of the summaries to fit (nme_io_mean, nme_box_mean, ...)
    method: str = "ours"  # method in the summaries
    target: float = 0.0  # also say how many training faces the fitted law needs for this error
    out: str = ""  # also plot the curve to this PNG


@dataclass
class ShipConfig:
    """Copy a run's best checkpoint to models/ with release metadata."""

    run: str = "runs/onet"  # run folder holding best.pt
    checkpoint: str = ""  # release this checkpoint instead of <run>/best.pt (e.g. a calibrated one)
    evaluation: str = ""  # summary.json of `evaluate` to embed (optional)
    out: str = "models/landmarks.pt"  # where the shipped checkpoint goes
    version: str = "1.0.0"  # release version
    name: str = "onet-68"  # release name
    flip_test_time: bool = False  # the predictor's default for this checkpoint
    first_stage: str = ""  # put this checkpoint's first (box) stage in front of the run's refinement stages
    weights_dtype: Literal["float32", "float16"] = "float32"  # weights as stored (served in float32)
    export: bool = True  # export the stages to ONNX beside it (what the service runs, without torch)


@dataclass
class ExportConfig:
    """Export a checkpoint's stages to ONNX beside it, with the manifest the service loads without torch."""

    checkpoint: str = "models/landmarks.pt"  # checkpoint to export (writes <stem>.json, <stem>.stageN.onnx)


# --- command line generation --------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_comments(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field in the class source, used as --help text."""
    import inspect

    comments: dict[str, str] = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return comments
    for line in source.splitlines():
        stripped = line.strip()
        if ":" in stripped and "#" in stripped and not stripped.startswith("#"):
            name = stripped.split(":", 1)[0].strip()
            if name.isidentifier():
                comments[name] = stripped.split("#", 1)[1].strip()
    return comments


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of ``cls`` (nested dataclasses flattened, their names kept unique)."""
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            add_arguments(parser, kind)
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{comments.get(f.name, '')} (default: {default})"
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        options: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
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


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from its ``to_dict()`` (e.g. from a checkpoint's metadata)."""
    data = dict(data)
    model = ModelConfig(**{**data.pop("model", {})})
    model.channels = tuple(model.channels)  # type: ignore[assignment]
    return TrainConfig(
        model=model,
        augment=AugmentConfig(**data.pop("augment", {})),
        prepare=PrepareConfig(**data.pop("prepare", {})),
        **data,
    )


def resolve(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()
