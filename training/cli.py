"""``face-landmarks-train COMMAND`` (or ``python -m training COMMAND``): prepare, train, evaluate, pose,
calibrate, onet-init, subset, curve, ship, export, mean-face.

``COMMANDS`` is the whole command line: each command's name, its help, the dataclass of
``training.config`` its options come from (each option's help beside its field), and the function that
runs it and returns what it prints. Each function imports its module when called, so that ``--help``
and the quick commands do not load Lightning.
"""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training.config import (
    CalibrateConfig,
    CurveConfig,
    EvaluateConfig,
    ExportConfig,
    MeanFaceConfig,
    OnetInitConfig,
    PoseEvaluateConfig,
    PrepareFoldersConfig,
    ShipConfig,
    SubsetConfig,
    TrainConfig,
    add_arguments,
    from_arguments,
)


def prepare(config: PrepareFoldersConfig) -> str:
    from training.cache import prepare_folder, prepare_summary

    return "\n".join(prepare_summary(prepare_folder(f, config.prepare)) for f in config.folders)


def train(config: TrainConfig) -> None:
    from training.train import run_training

    run_training(config)


def evaluate(config: EvaluateConfig) -> str:
    from training.evaluate import markdown_table, run_evaluation

    return markdown_table(run_evaluation(config))


def pose(config: PoseEvaluateConfig) -> str:
    from training.pose_eval import markdown_table, run_pose_evaluation

    return markdown_table(run_pose_evaluation(config))


def calibrate(config: CalibrateConfig) -> str:
    from training.calibrate import run_calibration

    return json.dumps(run_calibration(config), indent=2)


def onet_init(config: OnetInitConfig) -> str:
    from training.onet_init import run_onet_init

    return json.dumps({"init": str(run_onet_init(config))})


def subset(config: SubsetConfig) -> str:
    from training.split import subset_folder

    c = config
    return json.dumps(subset_folder(c.folder, c.fraction, c.out, c.seed, c.val_fraction, c.split_salt))


def curve(config: CurveConfig) -> str:
    from training.curve import learning_curve

    c = config
    return json.dumps(learning_curve(c.evaluations, c.dataset, c.metric, c.method, c.target, c.out), indent=2)


def ship(config: ShipConfig) -> str:
    from training.ship import ship as release

    return json.dumps({"shipped": str(release(config))})


def export(config: ExportConfig) -> str:
    from app.inference.export import export_checkpoint

    return json.dumps({"exported": str(export_checkpoint(config.checkpoint))})


def mean_face(config: MeanFaceConfig) -> str:
    from training.mean_face import derive_mean_face, python_table

    return python_table(
        derive_mean_face(config.folder, config.part, (config.val_fraction, config.split_salt))
    )


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    config: type
    run: Callable[[Any], str | None]  # the config -> what the command prints (None: nothing)


# In the order --help lists them.
COMMANDS = (
    Command(
        "prepare",
        "detect the labelled faces of folders and cache their patches",
        PrepareFoldersConfig,
        prepare,
    ),
    Command("train", "train the ONet on prepared folders (prepares them if needed)", TrainConfig, train),
    Command("evaluate", "evaluate a checkpoint through LandmarkPredictor, vs dlib", EvaluateConfig, evaluate),
    Command("pose", "head-pose accuracy (|yaw| error) on AFLW2000-3D, vs dlib", PoseEvaluateConfig, pose),
    Command(
        "calibrate",
        "fit the error estimate's calibration on the training split's faces",
        CalibrateConfig,
        calibrate,
    ),
    Command("onet-init", "a refinement stage starting from MTCNN's trained ONet", OnetInitConfig, onet_init),
    Command(
        "subset",
        "a folder of symlinks: the validation split and a fraction of the training images",
        SubsetConfig,
        subset,
    ),
    Command("curve", "learning curve: error against training faces, power-law fit", CurveConfig, curve),
    Command("ship", "copy a run's best checkpoint to models/ with release metadata", ShipConfig, ship),
    Command(
        "export",
        "export a checkpoint's networks to ONNX beside it (served without torch)",
        ExportConfig,
        export,
    ),
    Command(
        "mean-face",
        "the 3D mean face of app/inference/pose.py, from many posed faces' labels",
        MeanFaceConfig,
        mean_face,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="face-landmarks-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        add_arguments(commands.add_parser(command.name, help=command.help), command.config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = next(c for c in COMMANDS if c.name == args.command)
    output = command.run(from_arguments(command.config, args))
    if output is not None:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
