"""Learning curves: the power law fitted to runs on nested subsets, read from their evaluations."""

import json
from pathlib import Path

import numpy as np
import pytest

from app.inference.checkpoint import LoadedModel, save_checkpoint
from app.inference.model import ONetConfig, build_model
from training.cli import main
from training.curve import fit_power_law, learning_curve, training_faces

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_fit_recovers_a_power_law() -> None:
    faces = np.array([200.0, 400.0, 800.0, 1600.0])
    a, b = fit_power_law(faces, 0.2 * faces**-0.25)
    assert a == pytest.approx(0.2) and b == pytest.approx(0.25)
    with pytest.raises(ValueError, match="two numbers"):
        fit_power_law(np.array([100.0, 100.0]), np.array([0.05, 0.04]))


def test_training_faces_count_the_served_heads_folders() -> None:
    trained_on = [{"faces_train": 1636, "head": "300w"}, {"faces_train": 1014, "head": "aflw2000"}]
    assert training_faces({"served_head": "300w", "trained_on": trained_on}) == 1636
    assert training_faces({"trained_on": [{"faces_train": 50}]}) == 50  # one head, no record of it


def test_the_curve_command_reads_each_runs_faces_from_its_checkpoint(tmp_path: Path) -> None:
    config = ONetConfig(channels=(4, 8, 8, 16), fc_features=16)
    evaluations = []
    for faces in (400, 800, 1600):
        checkpoint = tmp_path / f"run-{faces}.pt"
        metadata = {"served_head": "300w", "trained_on": [{"faces_train": faces, "head": "300w"}]}
        save_checkpoint(
            checkpoint, LoadedModel(build_model(config), config, np.full(3, 0.5), np.full(3, 0.25), metadata)
        )
        error = 0.5 * faces**-0.3
        methods = {"ours": {"nme_io_mean": error}}
        summary = {"checkpoint": str(checkpoint), "datasets": {"helen": {"methods": methods}}}
        (tmp_path / f"eval-{faces}.json").write_text(json.dumps(summary))
        evaluations.append(str(tmp_path / f"eval-{faces}.json"))
    plot = tmp_path / "curve.png"
    args = ["curve", "--evaluations", *reversed(evaluations), "--dataset", "helen", "--target", "0.05"]
    assert main([*args, "--out", str(plot)]) == 0
    assert plot.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="nme_box_mean"):
        main([*args, "--metric", "nme_box_mean"])


def test_the_curve_result(tmp_path: Path) -> None:
    config = ONetConfig(channels=(4, 8, 8, 16), fc_features=16)
    paths = []
    for faces, error in ((100, 0.08), (400, 0.04)):  # error halves for each 4x: b = 0.5
        checkpoint = tmp_path / f"{faces}.pt"
        metadata = {"trained_on": [{"faces_train": faces}]}
        save_checkpoint(
            checkpoint, LoadedModel(build_model(config), config, np.full(3, 0.5), np.full(3, 0.25), metadata)
        )
        summary = {"checkpoint": str(checkpoint), "datasets": {"d": {"methods": {"ours": {"m": error}}}}}
        paths.append(tmp_path / f"{faces}.json")
        paths[-1].write_text(json.dumps(summary))
    result = learning_curve([str(p) for p in paths], "d", "m", "ours", 0.02, "")
    assert [p["faces"] for p in result["points"]] == [100, 400]
    assert result["fit"]["b"] == pytest.approx(0.5)
    assert result["fit"]["error_per_doubling"] == pytest.approx(2**-0.5)
    assert result["faces_for_target"] == pytest.approx(1600)
    assert "plot" not in result
