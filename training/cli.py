"""``face-landmarks-train COMMAND`` (or ``python -m training COMMAND``): prepare, train, evaluate, pose,
calibrate, onet-init, subset, curve, ship.

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
    OnetInitConfig,
    PoseEvaluateConfig,
    PrepareConfig,
    ShipConfig,
    SubsetConfig,
    TrainConfig,
    add_arguments,
    from_arguments,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="face-landmarks-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser(
        "prepare", help="detect the labelled faces of folders and cache their patches"
    )
    prepare.add_argument("folders", nargs="+", help="folders of images with .pts files beside them")
    add_arguments(prepare, PrepareConfig)
    train = commands.add_parser("train", help="train the ONet on prepared folders (prepares them if needed)")
    add_arguments(train, TrainConfig)
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a checkpoint through LandmarkPredictor, vs dlib"
    )
    add_arguments(evaluate, EvaluateConfig)
    pose = commands.add_parser("pose", help="head-pose accuracy (|yaw| error) on AFLW2000-3D, vs dlib")
    add_arguments(pose, PoseEvaluateConfig)
    calibrate = commands.add_parser(
        "calibrate", help="fit the error estimate's calibration on the training split's faces"
    )
    add_arguments(calibrate, CalibrateConfig)
    onet_init = commands.add_parser("onet-init", help="a refinement stage starting from MTCNN's trained ONet")
    add_arguments(onet_init, OnetInitConfig)
    subset = commands.add_parser(
        "subset", help="a folder of symlinks: the validation split and a fraction of the training images"
    )
    add_arguments(subset, SubsetConfig)
    curve = commands.add_parser("curve", help="learning curve: error against training faces, power-law fit")
    add_arguments(curve, CurveConfig)
    ship = commands.add_parser("ship", help="copy a run's best checkpoint to models/ with release metadata")
    add_arguments(ship, ShipConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "prepare":
        from training.data import prepare_folder, prepare_summary

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
        from training.data import subset_folder

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
