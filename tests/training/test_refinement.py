"""A refinement stage trained on top of an earlier checkpoint, through the command line: the stage
itself, evaluate --head, a warm restart, a fine-tune on one convention, a release that pairs it with
another first stage, and the error estimate's calibration. The runs are made once per module (module-
scoped fixtures); each test checks one behaviour of them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.inference import LandmarkPredictor
from app.inference.checkpoint import LoadedModel, load_checkpoint
from app.inference.imaging import decode_image
from tests.training.conftest import LFPW, MENPO, train_args
from training.cli import main

pytestmark = pytest.mark.slow  # real training runs through the command line (tens of seconds each)

BOTH_HEADS = ["--heads", "aflw2000", "300w"]


def predict_one(model: LoadedModel) -> list:
    return LandmarkPredictor(model).predict(decode_image((LFPW / "image_0001.png").read_bytes(), 10**8))


def trainable_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without BatchNorm's running statistics (which move in training, even at lr 0)."""
    return {k: v for k, v in network.state_dict().items() if "running" not in k and "num_batches" not in k}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refinement")


def train(work: Path, name: str, data: list[Path], *extra: str) -> Path:
    assert main([*train_args(data, work, name, epochs=1), *extra]) == 0
    return work / "runs" / name / "best.pt"


@pytest.fixture(scope="module")
def first(work: Path, small_aflw: Path) -> Path:
    return train(work, "first", [small_aflw])


@pytest.fixture(scope="module")
def refined(work: Path, small_aflw: Path, first: Path) -> Path:
    """Stage 2 on [small AFLW, Menpo], one head per convention, behind ``first``."""
    return train(
        work, "refine", [small_aflw, MENPO], "--stage", "landmarks", "--first-stage", str(first), *BOTH_HEADS
    )


@pytest.fixture(scope="module")
def restarted(work: Path, small_aflw: Path, refined: Path) -> Path:
    """A warm restart of ``refined``'s stage at lr 0: --first-stages 1 drops its own refinement, --init
    starts from its weights and statistics."""
    restart = ["--stage", "landmarks", "--first-stage", str(refined), "--first-stages", "1", "--init"]
    return train(
        work,
        "restart",
        [small_aflw, MENPO],
        *restart,
        str(refined),
        *BOTH_HEADS,
        "--lr",
        "0",
        "--weight-decay",
        "0",
    )


@pytest.fixture(scope="module")
def other_first(work: Path, small_aflw: Path) -> Path:
    """Another, narrower first stage."""
    return train(work, "other", [small_aflw], "--channels", "8", "16", "16", "32")


@pytest.fixture(scope="module")
def calibrated(work: Path, small_aflw: Path, refined: Path) -> Path:
    out = work / "calibrated.pt"
    args = ["calibrate", "--checkpoint", str(refined), "--out", str(out)]
    assert main([*args, "--data", str(small_aflw), str(MENPO)]) == 0
    return out


def ship(work: Path, run: str, out: str, *extra: str) -> LoadedModel:
    assert main(["ship", "--run", str(work / "runs" / run), "--out", str(work / out), *extra]) == 0
    return load_checkpoint(work / out)


def test_a_refinement_stage_follows_the_earlier_stages_unchanged(refined: Path, first: Path) -> None:
    model = load_checkpoint(refined)
    assert [stage.crop for stage in model.stages] == ["box", "landmarks"]
    assert model.output_config.heads == ("aflw2000", "300w") and model.output_config.error_head
    assert [r["head"] for r in model.metadata["trained_on"]] == ["aflw2000", "300w"]
    assert model.metadata["first_stage"]["checkpoint"] == str(first)
    earlier = load_checkpoint(first)
    assert all(torch.equal(a, b) for a, b in zip(
        model.network.state_dict().values(), earlier.network.state_dict().values(), strict=True
    ))  # fmt: skip
    faces = predict_one(model)
    assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all()
    assert faces[0].error_estimate is not None and faces[0].error_estimate > 0


def test_evaluate_head_reads_the_other_conventions_head_of_the_same_network(
    refined: Path, work: Path
) -> None:
    summaries = {}
    for head in ("", "300w"):
        out = work / f"eval-{head or 'served'}"
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
        summaries[head] = json.loads((out / "summary.json").read_text())
    served, other = summaries[""], summaries["300w"]
    assert (served["head"], other["head"]) == ("aflw2000", "300w")
    nme = [s["datasets"]["samples-lfpw"]["methods"]["ours"]["nme_box_mean"] for s in (served, other)]
    assert nme[0] != nme[1]
    assert "300w head" in (work / "eval-300w" / "summary.md").read_text()


def test_a_warm_restart_at_lr_0_keeps_the_stage_its_weights_and_statistics(
    refined: Path, restarted: Path
) -> None:
    model, warm = load_checkpoint(refined), load_checkpoint(restarted)
    assert [stage.crop for stage in warm.stages] == ["box", "landmarks"]
    assert warm.metadata["init"] == str(refined) and warm.metadata["first_stage"]["stages_kept"] == 1
    assert (
        trainable_state(warm.refinements[0].network).keys()
        == trainable_state(model.refinements[0].network).keys()
    )
    for key, value in trainable_state(model.refinements[0].network).items():
        assert torch.equal(value, warm.refinements[0].network.state_dict()[key]), key
    np.testing.assert_array_equal(warm.refinements[0].mean, model.refinements[0].mean)


def test_fine_tuning_on_one_convention_keeps_the_trunk_and_that_heads_rows(work: Path, refined: Path) -> None:
    tune = ["--stage", "landmarks", "--heads", "300w", "--first-stage", str(refined), "--first-stages", "1"]
    tuned = load_checkpoint(
        train(work, "tune", [MENPO], *tune, "--init", str(refined), "--lr", "0", "--weight-decay", "0")
    )
    stage = tuned.refinements[0]
    source = load_checkpoint(refined).refinements[0].network.state_dict()
    assert stage.config.heads == ("300w",)
    for key, value in trainable_state(stage.network).items():
        if key.startswith("landmarks."):  # the second head's 136 rows ("300w" comes after "aflw2000")
            assert torch.equal(value, source[key][136:]), key
        else:
            assert torch.equal(value, source[key]), key


def test_init_from_a_checkpoint_without_the_runs_head_is_refused(work: Path, refined: Path) -> None:
    bad = ["--stage", "landmarks", "--heads", "menpo", "--first-stage", str(refined), "--first-stages", "1"]
    with pytest.raises(ValueError, match="--init"):
        main([*train_args([MENPO], work, "bad-head", epochs=1), *bad, "--init", str(refined)])


def test_a_release_may_pair_the_refinement_stages_with_another_first_stage(
    work: Path, restarted: Path, other_first: Path
) -> None:
    release = ship(work, "restart", "paired.pt", "--first-stage", str(other_first))
    assert release.config.channels == (8, 16, 16, 32) and release.metadata["first_stage"]["name"] == "other"
    assert release.refinements[0].config == load_checkpoint(restarted).refinements[0].config
    faces = predict_one(release)
    assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all()


def test_the_calibration_is_fitted_on_the_training_splits_faces(
    calibrated: Path, refined: Path, small_aflw: Path
) -> None:
    record = load_checkpoint(calibrated).metadata["error_calibration"]
    assert record["split"] == "training" and record["fitted_on"] == [str(small_aflw), str(MENPO)]
    trained_on = load_checkpoint(refined).metadata["trained_on"]
    assert record["faces"] == sum(r["faces_train"] for r in trained_on)


def test_the_hard_face_flip_threshold_is_a_training_quantile_that_the_predictor_reads(
    calibrated: Path, refined: Path
) -> None:
    # The 0.9 quantile of the same faces' raw estimates: about 1 in 10 passes it.
    metadata = load_checkpoint(calibrated).metadata
    hard = metadata["hard_face_flip"]
    assert hard["quantile"] == 0.9 and hard["split"] == "training"
    assert hard["faces"] == metadata["error_calibration"]["faces"]
    raw = LandmarkPredictor(load_checkpoint(refined), flip_hard_faces=False, calibrate_error=False)
    served = LandmarkPredictor(load_checkpoint(calibrated))
    assert served.hard_face_flip == hard["estimate_above"] and raw.hard_face_flip is None


def test_a_release_keeps_the_calibration_also_at_half_precision(work: Path, calibrated: Path) -> None:
    record = load_checkpoint(calibrated).metadata["error_calibration"]
    kept = ship(work, "refine", "kept.pt", "--checkpoint", str(calibrated))
    assert kept.metadata["error_calibration"] == record
    half = ship(work, "refine", "half.pt", "--checkpoint", str(calibrated), "--weights-dtype", "float16")
    assert half.metadata["weights_dtype"] == "float16" and half.metadata["error_calibration"] == record
    assert (work / "half.pt").stat().st_size < 0.6 * (work / "kept.pt").stat().st_size


def test_a_release_that_swaps_the_first_stage_drops_the_calibration(
    work: Path, calibrated: Path, other_first: Path
) -> None:
    swapped = ship(
        work, "refine", "swapped.pt", "--checkpoint", str(calibrated), "--first-stage", str(other_first)
    )
    assert "error_calibration" not in swapped.metadata
    assert "hard_face_flip" not in swapped.metadata
