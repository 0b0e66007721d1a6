"""``face-landmarks-train COMMAND`` (or ``python -m training COMMAND``): prepare, train, evaluate, pose,
calibrate, onet-init, subset, curve, ship, export.

Options are generated from the dataclasses of ``training.config``; this module has no logic of its own.
"""

import argparse
import json
import logging
import sys

from training.config import (
    CalibrateConfig,
    CurveConfig,
    EvaluateConfig,
    ExportConfig,
    OnetInitConfig,
    PoseEvaluateConfig,
    PrepareConfig,
    ShipConfig,
    SubsetConfig,
    TrainConfig,
    add_arguments,
    from_arguments,
)

# (command, help, the dataclass its options come from), in the order --help lists them.
COMMANDS = (
    ("prepare", "detect the labelled faces of folders and cache their patches", PrepareConfig),
    ("train", "train the ONet on prepared folders (prepares them if needed)", TrainConfig),
    ("evaluate", "evaluate a checkpoint through LandmarkPredictor, vs dlib", EvaluateConfig),
    ("pose", "head-pose accuracy (|yaw| error) on AFLW2000-3D, vs dlib", PoseEvaluateConfig),
    ("calibrate", "fit the error estimate's calibration on the training split's faces", CalibrateConfig),
    ("onet-init", "a refinement stage starting from MTCNN's trained ONet", OnetInitConfig),
    (
        "subset",
        "a folder of symlinks: the validation split and a fraction of the training images",
        SubsetConfig,
    ),
    ("curve", "learning curve: error against training faces, power-law fit", CurveConfig),
    ("ship", "copy a run's best checkpoint to models/ with release metadata", ShipConfig),
    ("export", "export a checkpoint's networks to ONNX beside it (served without torch)", ExportConfig),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="face-landmarks-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text, config in COMMANDS:
        command = commands.add_parser(name, help=help_text)
        if name == "prepare":
            command.add_argument("folders", nargs="+", help="folders of images with .pts files beside them")
        add_arguments(command, config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "prepare":
        from training.cache import prepare_folder, prepare_summary

        config = from_arguments(PrepareConfig, args)
        for folder in args.folders:
            print(prepare_summary(prepare_folder(folder, config)))
    elif args.command == "train":
        from training.train import run_training

        run_training(from_arguments(TrainConfig, args))
    elif args.command == "evaluate":
        from training.evaluate import markdown_table, run_evaluation

        print(markdown_table(run_evaluation(from_arguments(EvaluateConfig, args))))
    elif args.command == "pose":
        from training.pose_eval import markdown_table as pose_table
        from training.pose_eval import run_pose_evaluation

        print(pose_table(run_pose_evaluation(from_arguments(PoseEvaluateConfig, args))))
    elif args.command == "calibrate":
        from training.calibrate import run_calibration

        print(json.dumps(run_calibration(from_arguments(CalibrateConfig, args)), indent=2))
    elif args.command == "onet-init":
        from training.onet_init import run_onet_init

        print(json.dumps({"init": str(run_onet_init(from_arguments(OnetInitConfig, args)))}))
    elif args.command == "subset":
        from training.split import subset_folder

        c = from_arguments(SubsetConfig, args)
        print(json.dumps(subset_folder(c.folder, c.fraction, c.out, c.seed, c.val_fraction, c.split_salt)))
    elif args.command == "curve":
        from training.curve import learning_curve

        c = from_arguments(CurveConfig, args)
        print(
            json.dumps(
                learning_curve(c.evaluations, c.dataset, c.metric, c.method, c.target, c.out), indent=2
            )
        )
    elif args.command == "ship":
        from training.ship import ship

        print(json.dumps({"shipped": str(ship(from_arguments(ShipConfig, args)))}))
    elif args.command == "export":
        from app.inference.export import export_checkpoint

        print(json.dumps({"exported": str(export_checkpoint(from_arguments(ExportConfig, args).checkpoint))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
