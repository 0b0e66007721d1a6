"""The LightningModule: a thin wrapper around the plain ``nn.Module`` built outside.

It owns the loss, the optimiser and its schedule and the metrics, logged as ``split/metric``; its input
is standardised by the inference layer's own code (``standardise_crops``), as the served stage's is.
"""

import math

import lightning as L
import numpy as np
import torch
from torch import nn

from app.inference.runtime import standardise
from training.config import TrainConfig
from training.metrics import INNER


def l2_loss(pred: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """MTCNN's Euclidean loss: half the squared point-to-point distance, averaged over points
    (per point with ``reduce=False``)."""
    loss = 0.5 * ((pred - target) ** 2).sum(-1)
    return loss.mean() if reduce else loss


def wing_loss(
    pred: torch.Tensor, target: torch.Tensor, width: float, curvature: float, reduce: bool = True
) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) per coordinate, summed over x and y, averaged over points
    (per point with ``reduce=False``).

    ``w ln(1 + |x| / eps)`` for ``|x| < w``, else ``|x| - C`` with ``C = w - w ln(1 + w / eps)``: a
    log (large gradients) for small and medium errors, L1 for large ones.
    """
    x = (pred - target).abs()
    c = width - width * math.log1p(width / curvature)
    loss = torch.where(x < width, width * torch.log1p(x / curvature), x - c).sum(-1)
    return loss.mean() if reduce else loss


def smooth_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, beta: float, reduce: bool = True
) -> torch.Tensor:
    loss = nn.functional.smooth_l1_loss(pred, target, beta=beta, reduction="none").sum(-1)
    return loss.mean() if reduce else loss


# Added to the NME before its log is taken by the error head's target (keeps the log finite).
ERROR_FLOOR = 2e-3


def standardise_crops(crops: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """(N, S, S, C) uint8 crops -> (N, C, S, S) float32 network input: the predictor's standardisation
    (``StageRunner.normalise`` runs ``app.inference.runtime.standardise``), so that a stage is trained on
    the very numbers it is served."""
    return torch.from_numpy(standardise(crops, mean, std))


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
        self.mean, self.std = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)

    def standardise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) uint8 crops (the loaders' layout) -> the network's float input, on their device."""
        crops = images.permute(0, 2, 3, 1).cpu().numpy()
        return standardise_crops(crops, self.mean, self.std).to(images.device)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C, S, S) uint8 crops -> ((N, heads, 68, 2) normalised frame coordinates, (N,) log
        expected NME or None)."""
        return self.network.outputs(self.standardise(images))

    def point_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-point loss (..., 68) of normalised coordinates."""
        c = self.config
        # In crop pixels, so that the Wing / smooth-L1 constants mean what the papers mean.
        pred, target = pred * c.input_size, target * c.input_size
        if c.loss == "l2":
            return l2_loss(pred, target, reduce=False)
        if c.loss == "wing":
            return wing_loss(pred, target, c.wing_width, c.wing_curvature, reduce=False)
        if c.loss == "smooth_l1":
            return smooth_l1_loss(pred, target, c.smooth_l1_beta, reduce=False)
        raise ValueError(f"unknown loss {c.loss!r}")

    def supervision(self, heads: torch.Tensor, num_heads: int, num_points: int) -> torch.Tensor:
        """(N, heads, points) weights: every point of a face through the head of its own convention and,
        with ``share_inner``, its inner points through the served head (head 0) too."""
        mask = torch.zeros(len(heads), num_heads, num_points, device=heads.device)
        mask[torch.arange(len(heads)), heads] = 1.0
        if self.config.share_inner:
            mask[:, 0, INNER] = 1.0
        return mask

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        pred_all, log_error = self(batch["image"])
        target, heads, frame_size = batch["target"], batch["head"], batch["frame_size"]
        mask = self.supervision(heads, pred_all.shape[1], pred_all.shape[2])
        losses = self.point_loss(pred_all, target[:, None])
        landmark_loss = (losses * mask).sum() / mask[:, 0].numel()
        own = pred_all[torch.arange(len(heads)), heads]
        nme = nme_box(own.detach(), target, frame_size)
        loss = landmark_loss
        size = len(batch["image"])
        on_step = split == "train"
        if log_error is not None:
            # The served head's own error on this face, which is what error_estimate promises.
            served = nme_box(pred_all[:, 0].detach(), target, frame_size)
            error_loss = nn.functional.smooth_l1_loss(log_error, torch.log(served + ERROR_FLOOR))
            loss = loss + self.config.error_loss_weight * error_loss
            self.log(f"{split}/error_loss", error_loss, on_step=False, on_epoch=True, batch_size=size)
        nme = nme.mean()
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
