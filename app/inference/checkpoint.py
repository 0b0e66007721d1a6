"""Checkpoint files: weights plus everything needed to use them, rebuilt from the file alone.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    format        "face-landmarks/1"
    config        ONetConfig.to_dict(): architecture name, input size, channels, number of points
    state_dict    the network's weights
    normalization {"mean": [r, g, b], "std": [r, g, b]} on crops scaled to [0, 1]
    metadata      name, version, created, trained_on, training config, evaluation figures, ...
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.inference.errors import ModelLoadError
from app.inference.model import ONetConfig, build_model

FORMAT = "face-landmarks/1"


@dataclass
class LoadedModel:
    network: nn.Module
    config: ONetConfig
    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.config.arch))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unversioned"))


def save_checkpoint(
    path: str | Path,
    network: nn.Module,
    config: ONetConfig,
    mean: np.ndarray | list[float],
    std: np.ndarray | list[float],
    metadata: dict[str, Any],
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
        "normalization": {
            "mean": [float(v) for v in np.asarray(mean).ravel()],
            "std": [float(v) for v in np.asarray(std).ravel()],
        },
        "metadata": metadata,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load and validate a checkpoint; the network comes back in eval mode on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # Only torch's first sentence: the rest advises weights_only=False, i.e. running code from the file.
        reason = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"model checkpoint {path} is unreadable or corrupt: {reason[:200]}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelLoadError(f"{path} is not a face-landmarks checkpoint (expected format {FORMAT!r})")
    try:
        config = ONetConfig.from_dict(payload["config"])
        network = build_model(config)
        network.load_state_dict(payload["state_dict"])
        mean = np.asarray(payload["normalization"]["mean"], dtype=np.float32)
        std = np.asarray(payload["normalization"]["std"], dtype=np.float32)
    except Exception as exc:
        raise ModelLoadError(f"model checkpoint {path} is inconsistent: {exc}") from exc
    if mean.shape != (config.in_channels,) or std.shape != (config.in_channels,) or np.any(std <= 0):
        raise ModelLoadError(f"model checkpoint {path} has invalid normalisation statistics")
    network.eval()
    return LoadedModel(network, config, mean, std, dict(payload.get("metadata") or {}))
