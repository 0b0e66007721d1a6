"""Checkpoint files: weights plus everything needed to use them, rebuilt from the file alone.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    format        "face-landmarks/2" ("face-landmarks/1" files, without refinements, still load)
    config        ONetConfig.to_dict(): architecture name, input size, channels, points, heads
    state_dict    the network's weights
    normalization {"mean": [r, g, b], "std": [r, g, b]} on crops scaled to [0, 1]
    refinements   [{"crop": "landmarks", "config", "state_dict", "normalization"}, ...]: later stages,
                  each run on the frame that ``geometry.landmark_frame`` draws around the points of
                  the stage before it (a cascade); empty for a single-stage model
    metadata      name, version, created, trained_on, training config, evaluation figures, ...;
                  ``weights_dtype`` "float16" stores the floating-point weights at half precision (a
                  release half the size); they are computed with in float32 once loaded

The first stage always crops the detector's box as it is.

torch is imported only to read or write these files: a model served from its ONNX export
(``app.inference.export``) has the same ``LoadedModel`` with ``OnnxGraph`` networks, and no torch.
"""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.architecture import ONetConfig
from app.inference.errors import ModelLoadError
from app.inference.files import write_atomically

FORMAT = "face-landmarks/2"
FORMATS = ("face-landmarks/1", FORMAT)
CROPS = ("box", "landmarks")
WEIGHT_DTYPES = ("float32", "float16")


@dataclass
class Stage:
    """One network of the cascade with the statistics its crops are standardised with."""

    # A torch ``nn.Module`` (from a checkpoint, or in training) or an ``export.OnnxGraph`` (from the
    # ONNX export): the runtimes of ``app.inference.runtime`` take either.
    network: Any
    config: ONetConfig
    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32
    crop: str = "box"  # "box": the detector's box as it is; "landmarks": landmark_frame of the points

    def to_payload(self, dtype: str = "float32") -> dict[str, Any]:
        """The stage as stored; floating-point weights in ``dtype`` (counters stay integers)."""
        import torch

        floating = getattr(torch, dtype)
        weights = {
            k: v.detach().cpu().to(floating) if v.is_floating_point() else v.detach().cpu().clone()
            for k, v in self.network.state_dict().items()
        }
        return {
            "crop": self.crop,
            "config": self.config.to_dict(),
            "state_dict": weights,
            "normalization": {
                "mean": [float(v) for v in np.asarray(self.mean).ravel()],
                "std": [float(v) for v in np.asarray(self.std).ravel()],
            },
        }


@dataclass(frozen=True)
class LoadedModel:
    """The first (box) stage's network, config and statistics, the refinement stages after it, and
    the metadata. Frozen, so that its stages are built once: derive another with
    ``dataclasses.replace(model, metadata=..., refinements=...)``."""

    network: Any  # as Stage.network
    config: ONetConfig
    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32
    metadata: dict[str, Any]
    refinements: list[Stage] = field(default_factory=list)
    # Where the networks came from when they are an ONNX export: the manifest's "export" record (files,
    # checksums, the checkpoint they were exported from); None for networks loaded from a checkpoint.
    export: dict[str, Any] | None = None

    @cached_property
    def stages(self) -> list[Stage]:
        """Every network of the cascade in order, the box stage first."""
        return [Stage(self.network, self.config, self.mean, self.std, "box"), *self.refinements]

    @property
    def output_config(self) -> ONetConfig:
        """The config of the stage whose points are served (the last one)."""
        return self.stages[-1].config

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.config.arch))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unversioned"))


def save_checkpoint(path: str | Path, model: LoadedModel) -> Path:
    """Write the model's stages and metadata; ``metadata["weights_dtype"]`` (default float32) sets the
    storage precision, so a file re-saved from its own metadata (e.g. by ``calibrate``) keeps it."""
    import torch

    dtype = model.metadata.get("weights_dtype", "float32")
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype {dtype!r}: expected one of {sorted(WEIGHT_DTYPES)}")
    first = model.stages[0].to_payload(dtype)
    first.pop("crop")
    payload = {
        "format": FORMAT,
        **first,
        "refinements": [stage.to_payload(dtype) for stage in model.refinements],
        "metadata": model.metadata,
    }
    # A reader (a worker loading the model) never sees half a file.
    return write_atomically(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load and validate a checkpoint; the network comes back in eval mode on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model checkpoint not found: {path}")
    try:
        import torch
    except ImportError as exc:
        raise ModelLoadError(
            f"{path} is a torch checkpoint and torch is not installed (the train extra has it); serve its "
            "ONNX export instead (face-landmarks-train export)"
        ) from exc
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # Only torch's first sentence: the rest advises weights_only=False, i.e. running code from the file.
        reason = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"model checkpoint {path} is unreadable or corrupt: {reason[:200]}") from exc
    if not isinstance(payload, dict) or payload.get("format") not in FORMATS:
        raise ModelLoadError(f"{path} is not a face-landmarks checkpoint (expected format {FORMAT!r})")
    try:
        first = _load_stage(path, {**payload, "crop": "box"})
        refinements = [_load_stage(path, item) for item in payload.get("refinements") or []]
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"model checkpoint {path} is inconsistent: {exc}") from exc
    if any(stage.crop != "landmarks" for stage in refinements):
        raise ModelLoadError(f"model checkpoint {path}: a refinement stage must crop 'landmarks'")
    metadata = dict(payload.get("metadata") or {})
    return LoadedModel(first.network, first.config, first.mean, first.std, metadata, refinements)


def _load_stage(path: Path, item: dict[str, Any]) -> Stage:
    from app.inference.model import build_model

    config = ONetConfig.from_dict(item["config"])
    network = build_model(config)
    network.load_state_dict(item["state_dict"])
    network.eval()
    return stage_of(network, config, item, f"model checkpoint {path}")


def stage_of(network: Any, config: ONetConfig, item: dict[str, Any], source: str) -> Stage:
    """The Stage of a stored stage record (``crop``, ``normalization``) and its network, validated;
    ``source`` names the file in errors. Shared by checkpoints and their ONNX exports."""
    mean = np.asarray(item["normalization"]["mean"], dtype=np.float32)
    std = np.asarray(item["normalization"]["std"], dtype=np.float32)
    if mean.shape != (config.in_channels,) or std.shape != (config.in_channels,) or np.any(std <= 0):
        raise ModelLoadError(f"{source} has invalid normalisation statistics")
    if item.get("crop") not in CROPS:
        raise ModelLoadError(f"{source}: unknown crop {item.get('crop')!r}")
    return Stage(network, config, mean, std, item["crop"])
