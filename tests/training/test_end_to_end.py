"""A tiny real run through the command line: prepare, train 2 epochs, evaluate, ship, then serve the
checkpoint with the web app and load it with the predictor, exactly as the service would. The run is
made once per module (module-scoped fixtures); each test checks one step of it."""

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
from tests.training.conftest import AFLW_DETECTED, LFPW, MENPO, train_args
from training.cli import main

pytestmark = pytest.mark.slow  # real training runs through the command line (tens of seconds each)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("end-to-end")


@pytest.fixture(scope="module")
def prepared(work: Path, small_aflw: Path) -> dict:
    """The report that ``prepare`` writes beside its cache."""
    assert main(["prepare", str(small_aflw), "--cache", str(work / "cache")]) == 0
    return json.loads(next((work / "cache").glob("*.json")).read_text())


@pytest.fixture(scope="module")
def run(work: Path, small_aflw: Path, prepared: dict) -> Path:
    """Two epochs on [small AFLW, Menpo], from the prepared cache."""
    assert main(train_args([small_aflw, MENPO], work, "tiny", epochs=2)) == 0
    return work / "runs" / "tiny"


@pytest.fixture(scope="module")
def evaluation(work: Path, run: Path, small_aflw: Path) -> Path:
    out = work / "eval"
    args = ["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(LFPW)]
    assert main([*args, "--val-data", str(small_aflw), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def shipped(work: Path, run: Path, evaluation: Path) -> Path:
    out = work / "models" / "landmarks.pt"
    ship = ["ship", "--run", str(run), "--evaluation", str(evaluation / "summary.json"), "--out", str(out)]
    assert main([*ship, "--version", "1.2.3", "--flip-test-time"]) == 0
    return out


def test_prepare_caches_the_detected_faces_and_counts_the_missed_one(prepared: dict) -> None:
    assert prepared["faces"] == len(AFLW_DETECTED) and prepared["undetected"] == 1


def test_train_logs_every_epoch_and_writes_its_split(run: Path, small_aflw: Path) -> None:
    with (run / "logs" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"train/loss_step", "train/nme", "val/nme", "val/loss"} <= set(rows[0])
    assert sorted({r["epoch"] for r in rows if r["val/nme"]}) == ["0", "1"]
    split = json.loads((run / "split.json").read_text())
    assert split["validation_stems"][str(small_aflw)] == ["image00041", "image00044", "image00049"]


def test_the_checkpoint_records_its_training(run: Path) -> None:
    model = load_checkpoint(run / "best.pt")
    assert model.metadata["training"]["epochs"] == 2
    assert model.metadata["split"]["val_fraction"] == 0.15
    assert [r["faces_train"] for r in model.metadata["trained_on"]] == [13, 3]
    assert not np.allclose(model.std, 0.25)  # statistics of the training crops, not a default


def test_the_predictor_loads_the_checkpoint_as_it_is(run: Path) -> None:
    predictor = LandmarkPredictor.from_checkpoint(run / "best.pt")
    faces = predictor.predict(decode_image((LFPW / "image_0001.png").read_bytes(), 10**8))
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)
    assert np.isfinite(faces[0].landmarks).all()


def test_evaluate_compares_ours_with_dlib_on_full_and_validation_folders(
    evaluation: Path, small_aflw: Path
) -> None:
    summary = json.loads((evaluation / "summary.json").read_text())
    lfpw = summary["datasets"]["samples-lfpw"]
    assert set(lfpw["methods"]) == {"ours", "ours+flip", "dlib"}
    assert lfpw["methods"]["dlib"]["faces"] == 6 and lfpw["undetected"] == 0
    assert lfpw["methods"]["dlib"]["auc"] > 0.5  # dlib's own predictor on 300-W faces: a sanity check
    small = summary["datasets"][f"{small_aflw.parent.name}-{small_aflw.name}-val"]
    assert small["images"] == 3 and small["methods"]["ours"]["faces"] == 3
    for data in summary["datasets"].values():
        assert (evaluation / data["plot"]).read_bytes().startswith(PNG_MAGIC)
    assert "| samples-lfpw | dlib | 6 |" in (evaluation / "summary.md").read_text()


def test_ship_releases_the_best_weights_with_the_evaluation(shipped: Path, run: Path) -> None:
    released = load_checkpoint(shipped)
    assert released.version == "1.2.3" and released.metadata["flip_test_time"] is True
    assert released.metadata["evaluation"]["datasets"]["samples-lfpw"]["methods"]["ours"]["faces"] == 6
    assert (shipped.parent / "ced-samples-lfpw.png").is_file()
    best = load_checkpoint(run / "best.pt")
    assert all(torch.equal(a, b) for a, b in zip(
        released.network.state_dict().values(), best.network.state_dict().values(), strict=True
    ))  # fmt: skip


def test_the_service_serves_the_shipped_checkpoint(shipped: Path) -> None:
    with TestClient(create_app(Settings(model_path=shipped))) as client:
        wait_ready(client)
        image = (LFPW / "image_0002.png").read_bytes()
        response = client.post("/landmarks", files={"image": ("face.png", image, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "onet-68", "version": "1.2.3"}
    assert len(body["faces"]) == 1
    assert len(body["faces"][0]["landmarks"]) == 68


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
