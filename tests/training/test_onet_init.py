"""A refinement stage that starts from MTCNN's ONet: the copied trunk computes what MTCNN's does."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.inference.checkpoint import load_checkpoint
from app.inference.model import ONetConfig, build_model
from tests.training.conftest import LFPW, MENPO, train_args
from training.cli import main
from training.onet_init import MTCNN_MEAN, MTCNN_STD, import_onet_trunk, landmark_crops
from training.split import SPLIT_SALT as SALT


def fake_mtcnn_onet(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the layout of facenet-pytorch's onet.pt (the real file is not in the repo)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "conv1": (32, 3, 3, 3), "conv2": (64, 32, 3, 3), "conv3": (64, 64, 3, 3), "conv4": (128, 64, 2, 2),
    }  # fmt: skip
    weights = {}
    for i, (name, shape) in enumerate(shapes.items(), start=1):
        weights[f"{name}.weight"] = torch.randn(shape, generator=generator) * 0.2
        weights[f"{name}.bias"] = torch.randn(shape[0], generator=generator) * 0.1
        weights[f"prelu{i}.weight"] = torch.rand(shape[0], generator=generator) * 0.3
    weights["dense5.weight"] = torch.randn(256, 1152, generator=generator)  # not copied (other input size)
    return weights


def mtcnn_trunk(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """MTCNN's ONet up to its last PReLU (as facenet-pytorch runs it)."""
    for i, pool in ((1, (3, 2)), (2, (3, 2)), (3, (2, 2)), (4, None)):
        x = F.prelu(
            F.conv2d(x, weights[f"conv{i}.weight"], weights[f"conv{i}.bias"]), weights[f"prelu{i}.weight"]
        )
        if pool:
            x = F.max_pool2d(x, pool[0], pool[1], ceil_mode=True)
    return x.flatten(1)


def standardise(crops: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(crops.transpose(0, 3, 1, 2).copy()).float() / 255.0
    return (x - torch.from_numpy(MTCNN_MEAN).view(1, 3, 1, 1)) / torch.from_numpy(MTCNN_STD).view(1, 3, 1, 1)


def test_the_imported_trunk_computes_mtcnns_convolutions_with_batch_norm() -> None:
    crops, targets = landmark_crops(LFPW, 100, 62, 0.15, SALT)
    assert crops.shape[1:] == (62, 62, 3) and targets.shape == (len(crops), 68, 2)
    assert 0.0 < targets.mean() < 1.0  # the points lie in their frames
    weights = fake_mtcnn_onet()
    network = build_model(ONetConfig(heads=("300w",)))
    import_onet_trunk(network, weights, crops)
    x = standardise(crops)
    with torch.no_grad():
        expected = mtcnn_trunk(weights, x)
        torch.testing.assert_close(network.eval().features(x), expected, rtol=1e-3, atol=1e-3)
        # In training mode BatchNorm uses the batch's statistics: on these crops, the same function.
        torch.testing.assert_close(network.train().features(x), expected, rtol=1e-3, atol=1e-3)
    assert torch.equal(network.features[4].weight, weights["conv2.weight"])


def test_not_an_onet_is_refused() -> None:
    crops, _ = landmark_crops(LFPW, 4, 62, 0.15, SALT)
    weights = fake_mtcnn_onet()
    with pytest.raises(ValueError, match="missing"):
        import_onet_trunk(build_model(ONetConfig()), {"conv1.weight": weights["conv1.weight"]}, crops)
    with pytest.raises(ValueError, match="widths"):
        import_onet_trunk(build_model(ONetConfig(channels=(16, 32, 32, 64))), weights, crops)


@pytest.mark.slow
def test_onet_init_writes_a_stage_that_train_init_starts_from(small_aflw: Path, tmp_path: Path) -> None:
    onet = tmp_path / "onet.pt"
    torch.save(fake_mtcnn_onet(), onet)
    assert main(train_args([small_aflw], tmp_path, "first", epochs=1)) == 0
    init = tmp_path / "init.pt"
    args = [
        "onet-init",
        "--weights",
        str(onet),
        "--first-stage",
        str(tmp_path / "runs" / "first" / "best.pt"),
    ]
    assert main([*args, "--data", str(LFPW), "--heads", "300w", "--out", str(init)]) == 0
    stage = load_checkpoint(init).refinements[0]
    assert stage.crop == "landmarks" and stage.config.heads == ("300w",) and stage.config.error_head
    np.testing.assert_allclose(stage.mean, 127.5 / 255)
    np.testing.assert_allclose(stage.std, 128 / 255)
    bias = stage.network.landmarks.bias.detach().numpy().reshape(68, 2)
    _, targets = landmark_crops(LFPW, 600, 62, 0.15, SALT)
    np.testing.assert_allclose(bias, targets.mean(axis=0), atol=1e-6)

    # train --init fine-tunes it (at lr 0 the copied convolutions stay) with MTCNN's standardisation.
    tune = [*train_args([MENPO], tmp_path, "tune", epochs=1), "--stage", "landmarks", "--heads", "300w"]
    tune += ["--first-stage", str(init), "--first-stages", "1", "--init", str(init), "--lr", "0"]
    assert main([*tune, "--weight-decay", "0"]) == 0
    tuned = load_checkpoint(tmp_path / "runs" / "tune" / "best.pt").refinements[0]
    assert torch.equal(tuned.network.features[0].weight, stage.network.features[0].weight)
    np.testing.assert_allclose(tuned.std, 128 / 255)
