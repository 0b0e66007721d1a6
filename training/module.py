"""The LightningModule: a thin wrapper around the plain ``nn.Module`` built outside.

It owns the loss, the optimiser and its schedule, the input standardisation (the same arithmetic as
``LandmarkPredictor.normalise``) and the metrics, logged as ``split/metric``.
"""

import math

import lightning as L
import numpy as np
import torch
from torch import nn

from training.config import TrainConfig


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MTCNN's Euclidean loss: half the squared point-to-point distance, averaged over points."""
    return 0.5 * ((pred - target) ** 2).sum(-1).mean()


def wing_loss(pred: torch.Tensor, target: torch.Tensor, width: float, curvature: float) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) per coordinate, summed over x and y, averaged over points.

    ``w ln(1 + |x| / eps)`` for ``|x| < w``, else ``|x| - C`` with ``C = w - w ln(1 + w / eps)``: a
    log (large gradients) for small and medium errors, L1 for large ones.
    """
    x = (pred - target).abs()
    c = width - width * math.log1p(width / curvature)
    loss = torch.where(x < width, width * torch.log1p(x / curvature), x - c)
    return loss.sum(-1).mean()


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    return nn.functional.smooth_l1_loss(pred, target, beta=beta, reduction="none").sum(-1).mean()


def nme_box(pred: torch.Tensor, target: torch.Tensor, frame_size: torch.Tensor) -> torch.Tensor:
    """Per face: mean point-to-point error in image pixels / sqrt(width x height) of the frame.

    ``pred``/``target`` are (N, 68, 2) normalised frame coordinates, ``frame_size`` (N, 2) pixels.
    """
    diff = (pred - target) * frame_size[:, None, :]
    return diff.norm(dim=-1).mean(-1) / frame_size.prod(-1).sqrt()


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate factor: linear from 0 to 1 over ``warmup_steps``, then cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LandmarkModule(L.LightningModule):
    def __init__(
        self,
        network: nn.Module,
        config: TrainConfig,
        mean: np.ndarray,
        std: np.ndarray,
    ) -> None:
        super().__init__()
        self.network = network
        self.config = config
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32))
        self.register_buffer("input_scale", (1.0 / (255.0 * std_t)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_shift", (mean_t / std_t).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) uint8 crops -> (N, 68, 2) normalised frame coordinates."""
        return self.network(images.float() * self.input_scale - self.input_shift)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        # In crop pixels, so that the Wing / smooth-L1 constants mean what the papers mean.
        pred, target = pred * c.input_size, target * c.input_size
        if c.loss == "l2":
            return l2_loss(pred, target)
        if c.loss == "wing":
            return wing_loss(pred, target, c.wing_width, c.wing_curvature)
        if c.loss == "smooth_l1":
            return smooth_l1_loss(pred, target, c.smooth_l1_beta)
        raise ValueError(f"unknown loss {c.loss!r}")

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        pred = self(batch["image"])
        loss = self.loss(pred, batch["target"])
        nme = nme_box(pred.detach(), batch["target"], batch["frame_size"]).mean()
        size = len(batch["image"])
        on_step = split == "train"
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=True, batch_size=size, sync_dist=True)
        self.log(
            f"{split}/nme",
            nme,
            on_step=False,
            on_epoch=True,
            batch_size=size,
            sync_dist=True,
            prog_bar=split == "val",
        )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> dict:
        c = self.config
        decay = [p for p in self.network.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.network.parameters() if p.ndim < 2]
        optimiser = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c.lr,
        )
        # Optimiser steps of the whole run on this device (accounts for devices, nodes and batch size).
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, round(c.warmup_epochs * total / max(1, c.epochs)))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: warmup_cosine(step, warmup, total, c.min_lr_ratio)
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
