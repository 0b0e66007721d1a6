"""A refinement stage that starts from MTCNN's trained ONet (Zhang et al. 2016): our ONet has its layout
(conv 3x3 32, 64, 64, conv 2x2 128, PReLU), so its four convolutions and their PReLUs are copied, and
each BatchNorm after them is set so that, on real stage-2 crops, conv + BatchNorm is exactly MTCNN's
conv + bias. The crops are standardised as MTCNN's were ((x - 127.5) / 128, RGB). The fully connected
layer (62-px crops flatten to 3,200 features, MTCNN's 48-px ones to 1,152) and the heads start afresh,
the landmark bias at the mean shape. ``train --init`` then fine-tunes it whole.

The weights are MTCNN's ONet as facenet-pytorch ships them (``facenet_pytorch/data/onet.pt``, MIT;
``pip download --no-deps facenet-pytorch==2.6.0`` and unzip): a face detector trained on WIDER FACE and
CelebA, i.e. far more faces than our landmark sets."""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from app.inference.checkpoint import Stage, load_checkpoint, save_checkpoint
from app.inference.geometry import crop_frame, landmark_frame
from app.inference.model import ONetConfig, build_model
from training.config import OnetInitConfig
from training.folders import labelled_images
from training.module import standardise_crops

logger = logging.getLogger(__name__)

MTCNN_MEAN = np.full(3, 127.5 / 255, np.float32)  # MTCNN's input: (x - 127.5) / 128 on 0-255 RGB
MTCNN_STD = np.full(3, 128 / 255, np.float32)
# (MTCNN's name, index of the convolution in ONet.features); BatchNorm and PReLU follow each one.
CONVOLUTIONS = (("conv1", 0), ("conv2", 4), ("conv3", 8), ("conv4", 12))


def landmark_crops(
    folder: str | Path, faces: int, size: int, val_fraction: float, salt: str
) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 crops of ``landmark_frame`` of the labelled points of the first ``faces``
    training-split images of ``folder`` (what stage 2 sees), and (N, 68, 2) the points normalised to
    those frames."""
    crops, targets = [], []
    for item in labelled_images(folder, "training", (val_fraction, salt)):
        image = item.decode()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        frame = landmark_frame(item.points)
        crops.append(crop_frame(image, frame, size))
        targets.append(frame.to_normalised(item.points))
        if len(crops) == faces:
            break
    if not crops:
        raise ValueError(f"{folder}: no labelled training-split image")
    return np.stack(crops), np.stack(targets).astype(np.float32)


@torch.no_grad()
def import_onet_trunk(network: nn.Module, weights: dict[str, torch.Tensor], crops: np.ndarray) -> None:
    """Copy MTCNN's convolutions and PReLUs into ``network`` (an ONet with BatchNorm) and set each
    BatchNorm, from the activations of ``crops``, so that conv + BatchNorm reproduces conv + bias."""
    expected = {f"conv{i}.weight" for i in range(1, 5)} | {f"prelu{i}.weight" for i in range(1, 5)}
    if not expected <= set(weights):
        raise ValueError(f"not MTCNN's ONet: missing {sorted(expected - set(weights))}")
    features = network.features
    # Standardised by the predictor's own code, as the stage will be served: (x - 127.5) / 128.
    x = standardise_crops(crops, MTCNN_MEAN, MTCNN_STD)
    for name, index in CONVOLUTIONS:
        conv, norm, prelu = features[index], features[index + 1], features[index + 2]
        if conv.weight.shape != weights[f"{name}.weight"].shape or not isinstance(norm, nn.BatchNorm2d):
            raise ValueError(f"{name}: the network must be an ONet of widths 32-64-64-128 with BatchNorm")
        conv.weight.copy_(weights[f"{name}.weight"])
        prelu.weight.copy_(weights[name.replace("conv", "prelu") + ".weight"])
        y = conv(x)
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.weight.copy_(torch.sqrt(var + norm.eps))
        norm.bias.copy_(mean + weights[f"{name}.bias"])
        x = prelu(norm.eval()(y))
        pool = features[index + 3]
        if isinstance(pool, nn.MaxPool2d):
            x = pool(x)


def run_onet_init(config: OnetInitConfig) -> Path:
    weights = torch.load(config.weights, map_location="cpu", weights_only=True)
    network_config = ONetConfig(heads=tuple(config.heads), error_head=config.error_head)
    torch.manual_seed(config.seed)
    network = build_model(network_config)
    crops, targets = landmark_crops(
        config.data, config.faces, network_config.input_size, config.val_fraction, config.split_salt
    )
    import_onet_trunk(network, weights, crops)
    with torch.no_grad():  # the landmark heads start at the mean shape, as train's --init-mean-shape
        mean_shape = torch.from_numpy(targets.mean(axis=0).reshape(-1))
        network.landmarks.bias.copy_(mean_shape.repeat(len(network_config.heads)))
    first = load_checkpoint(config.first_stage)
    stage = Stage(network.eval(), network_config, MTCNN_MEAN, MTCNN_STD, "landmarks")
    metadata = {
        "name": "onet-init",
        "init": {"weights": str(config.weights), "batch_norm_from": str(config.data), "faces": len(crops)},
    }
    path = save_checkpoint(config.out, dataclasses.replace(first, metadata=metadata, refinements=[stage]))
    logger.info("MTCNN's ONet trunk, BatchNorm set on %d crops of %s -> %s", len(crops), config.data, path)
    return path
