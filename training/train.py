"""A training run, readable in one sitting: data -> split -> statistics -> network -> fit -> checkpoints.

Outputs in ``<runs>/<name>/``: ``config.json``, ``split.json``, ``prepare.json``, ``logs/metrics.csv``
(CSVLogger), ``best.pt`` (lowest validation NME), ``last.pt`` and ``train_report.json``. Both ``.pt``
files are ``app.inference.checkpoint`` files that ``LandmarkPredictor.from_checkpoint`` loads as they are.
"""

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader

from app.inference.checkpoint import LoadedModel, Stage, load_checkpoint, save_checkpoint
from app.inference.model import ONetConfig, build_model
from training.cache import FaceCache, prepare_folder, prepare_summary
from training.config import TrainConfig
from training.dataset import FaceCropDataset, crop_statistics, split_items
from training.heads import select_heads
from training.module import LandmarkModule
from training.ship import first_stage_record
from training.split import SPLIT_RULE

logger = logging.getLogger(__name__)


DEFAULT_HEAD = "300w"


def head_names(config: TrainConfig) -> list[str]:
    """The landmark heads in order (the first is served): the distinct --heads, or the default one."""
    if config.heads and len(config.heads) != len(config.data):
        raise ValueError(
            f"--heads names {len(config.heads)} conventions for {len(config.data)} --data folders"
        )
    return list(dict.fromkeys(config.heads)) or [DEFAULT_HEAD]


def onet_config(config: TrainConfig) -> ONetConfig:
    m = config.model
    return ONetConfig(
        input_size=config.input_size,
        channels=tuple(m.channels),  # type: ignore[arg-type]
        fc_features=m.fc_features,
        batch_norm=m.batch_norm,
        dropout=m.dropout,
        heads=tuple(head_names(config)),
        error_head=m.error_head,
    )


def build_network(config: TrainConfig, mean_shape: np.ndarray | None) -> nn.Module:
    network = build_model(onet_config(config))
    if config.model.init_mean_shape and mean_shape is not None:
        # Start from the mean face: the first steps then learn offsets, not the face's position.
        with torch.no_grad():
            head: nn.Linear = network.landmarks  # type: ignore[assignment]
            head.weight.mul_(0.1)
            repeats = head.bias.numel() // mean_shape.size
            head.bias.copy_(torch.as_tensor(np.tile(mean_shape.reshape(-1), repeats), dtype=torch.float32))
    return network


def earlier_stages(config: TrainConfig) -> LoadedModel | None:
    """The checkpoint whose stages precede a refinement stage (None when training the first stage)."""
    if config.stage == "box":
        if config.first_stage or config.first_stages:
            raise ValueError("--first-stage and --first-stages go with --stage landmarks")
        return None
    if not config.first_stage:
        raise ValueError("--stage landmarks needs --first-stage CHECKPOINT (the stages before it)")
    earlier = load_checkpoint(config.first_stage)
    if config.first_stages < 0 or config.first_stages > len(earlier.stages):
        raise ValueError(
            f"--first-stages {config.first_stages}: {config.first_stage} has {len(earlier.stages)} stages"
        )
    if config.first_stages:
        earlier = dataclasses.replace(earlier, refinements=earlier.refinements[: config.first_stages - 1])
    return earlier


def warm_start(config: TrainConfig, network: nn.Module, network_config: ONetConfig) -> Stage | None:
    """For --init: the checkpoint's last stage, whose weights are copied into ``network`` (the
    architecture and crop must match; the run then standardises its crops with that stage's statistics,
    the ones its weights were trained with). None without --init."""
    if not config.init:
        return None
    stage = load_checkpoint(config.init).stages[-1]
    if stage.crop != config.stage:
        raise ValueError(
            f"--init {config.init}: its last stage crops {stage.crop!r}, this run {config.stage!r}"
        )
    theirs, ours = stage.config.to_dict(), network_config.to_dict()
    kept = list(network_config.heads)
    if {**theirs, "heads": kept} != ours or not set(kept) <= set(stage.config.heads):
        raise ValueError(f"--init {config.init}: its last stage is {theirs}, this run builds {ours}")
    network.load_state_dict(select_heads(stage.network.state_dict(), stage.config, kept))
    return stage


def parse_devices(devices: str) -> int | str | list[int]:
    devices = devices.strip()
    if devices == "auto":
        return devices
    if "," in devices:
        return [int(d) for d in devices.split(",") if d.strip()]
    return int(devices)


class ExportCheckpoints(L.Callback):
    """Writes ``best.pt`` whenever the validation NME improves and ``last.pt`` at the end."""

    def __init__(
        self,
        run_dir: Path,
        network_config: ONetConfig,
        mean: np.ndarray,
        std: np.ndarray,
        metadata: dict[str, Any],
        has_validation: bool,
        earlier: LoadedModel | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.earlier = earlier
        self.network_config = network_config
        self.mean, self.std = mean, std
        self.metadata = metadata
        self.has_validation = has_validation
        self.best_nme = math.inf
        self.best_epoch = -1
        self.history: list[dict[str, float]] = []

    def _save(self, name: str, module: LandmarkModule, extra: dict[str, Any]) -> None:
        metadata = {
            **self.metadata,
            **extra,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        path = self.run_dir / name
        if self.earlier is None:
            save_checkpoint(
                path, LoadedModel(module.network, self.network_config, self.mean, self.std, metadata)
            )
            return
        # A refinement stage: the earlier checkpoint's stages, then this network on landmark frames.
        stage = Stage(module.network, self.network_config, self.mean, self.std, "landmarks")
        e = self.earlier
        save_checkpoint(path, dataclasses.replace(e, metadata=metadata, refinements=[*e.refinements, stage]))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val/nme" not in trainer.callback_metrics:
            return
        nme = float(trainer.callback_metrics["val/nme"])
        self.history.append({"epoch": trainer.current_epoch, "val_nme": nme})
        if nme < self.best_nme:
            self.best_nme, self.best_epoch = nme, trainer.current_epoch
            if trainer.is_global_zero:
                self._save("best.pt", pl_module, {"best_epoch": self.best_epoch, "val_nme_box_crops": nme})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.has_validation and trainer.is_global_zero:
            self.best_epoch = trainer.current_epoch
            self._save("best.pt", pl_module, {"best_epoch": self.best_epoch})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._save("last.pt", pl_module, {"epoch": trainer.current_epoch})


class EpochLine(L.Callback):
    """One log line per epoch (readable in a nohup log, where a progress bar is not)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        values = " ".join(
            f"{k}={float(v):.4f}" for k, v in sorted(metrics.items()) if k.endswith(("nme", "loss_epoch"))
        )
        logger.info(
            "epoch %d: %s (%.1f s)", trainer.current_epoch, values, time.perf_counter() - self.started
        )


@dataclass
class RunResult:
    run_dir: Path
    best: Path
    best_epoch: int
    best_val_nme: float
    fit_seconds: float


@dataclass
class TrainingFaces:
    """The prepared folders and their faces, split: what a run trains and validates on."""

    folders: list[str]  # the --data folders, as given
    caches: list[FaceCache]  # one per folder
    folder_heads: dict[str, int]  # cache folder -> index of the landmark head its faces supervise
    train: list[tuple[FaceCache, int]]
    val: list[tuple[FaceCache, int]]

    def dataset(
        self, items: list[tuple[FaceCache, int]], config: TrainConfig, augment: bool
    ) -> FaceCropDataset:
        return FaceCropDataset(
            items, config.input_size, config.augment if augment else None, config.stage, self.folder_heads
        )

    def count(self, items: list[tuple[FaceCache, int]], cache: FaceCache) -> int:
        return sum(1 for c, _ in items if c is cache)


def load_faces(config: TrainConfig, heads: list[str]) -> TrainingFaces:
    """Prepare (or load the caches of) the --data folders and split their faces by the stem-hash rule."""
    caches = [prepare_folder(folder, config.prepare) for folder in config.data]
    # Each folder's faces are supervised through the head of its label convention.
    folder_heads = {
        cache.folder: heads.index(config.heads[k]) if config.heads else 0 for k, cache in enumerate(caches)
    }
    for cache in caches:
        rank_zero_only(print)(prepare_summary(cache))
    train, val = split_items(caches, config.val_fraction, config.split_salt)
    if not train:
        raise ValueError("no training faces: every image fell in the validation split or none was detected")
    rank_zero_only(print)(f"faces: {len(train)} training, {len(val)} validation")
    return TrainingFaces(list(config.data), caches, folder_heads, train, val)


def starting_network(
    config: TrainConfig, faces: TrainingFaces
) -> tuple[nn.Module, np.ndarray, np.ndarray, Stage | None]:
    """(network, crop mean, crop std, the --init stage or None): a fresh network whose landmark layer
    starts at the training faces' mean shape, standardised with their crops' statistics; with --init,
    that checkpoint's weights and statistics instead."""
    plain_train = faces.dataset(faces.train, config, augment=False)
    mean, std = crop_statistics(plain_train)
    mean_shape = np.mean([plain_train.sample(i, None)[1] for i in range(len(plain_train))], axis=0)
    network = build_network(config, mean_shape)
    initial = warm_start(config, network, onet_config(config))
    if initial is not None:
        mean, std = initial.mean, initial.std
    return network, mean, std, initial


def split_record(config: TrainConfig, faces: TrainingFaces) -> dict[str, Any]:
    """The split as ``split.json`` records it: the rule, its settings and every validation stem."""
    return {
        "rule": SPLIT_RULE,
        "val_fraction": config.val_fraction,
        "salt": config.split_salt,
        "validation_stems": {
            f: [c.stems[i] for c2, i in faces.val if c2 is c]
            for f, c in zip(faces.folders, faces.caches, strict=True)
        },
    }


def checkpoint_metadata(
    config: TrainConfig,
    faces: TrainingFaces,
    heads: list[str],
    earlier: LoadedModel | None,
    initial: Stage | None,
) -> dict[str, Any]:
    """What every checkpoint of the run says about it: data, split, configuration, heads, input."""
    trained_on = []
    for folder, cache in zip(faces.folders, faces.caches, strict=True):
        record = _folder_record(cache, folder, faces.count(faces.train, cache), faces.count(faces.val, cache))
        trained_on.append({**record, "head": heads[faces.folder_heads[cache.folder]]})
    split = split_record(config, faces)
    metadata: dict[str, Any] = {
        "name": config.name,
        "version": config.version,
        "trained_on": trained_on,
        "training": config.to_dict(),
        "split": {k: v for k, v in split.items() if k != "validation_stems"},
        "input": "dlib HOG box (upsample 0, grayscale detection) cropped as it is, resized to "
        f"{config.input_size}x{config.input_size}"
        + (
            "; then a refinement stage on the eye-aligned frame of the first stage's points"
            if config.stage == "landmarks"
            else ""
        ),
        "heads": heads,
        "served_head": heads[0],
        "flip_test_time": False,
    }
    if earlier is not None:
        metadata["first_stage"] = first_stage_record(config.first_stage, earlier, len(earlier.stages))
    if initial is not None:
        metadata["init"] = config.init
    return metadata


def data_loaders(config: TrainConfig, faces: TrainingFaces) -> tuple[DataLoader, DataLoader]:
    """(training loader: augmented, shuffled with the run's seed; validation loader: plain crops)."""
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        faces.dataset(faces.train, config, augment=True),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(faces.train) > config.batch_size,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        generator=generator,
    )
    val_loader = DataLoader(
        faces.dataset(faces.val, config, augment=False),
        batch_size=max(config.batch_size, 128),
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )
    return train_loader, val_loader


def make_trainer(
    config: TrainConfig, run_dir: Path, callbacks: list[L.Callback], validate: bool
) -> L.Trainer:
    if config.progress_bar:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=5)]
    return L.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=parse_devices(config.devices),
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,  # type: ignore[arg-type]
        logger=CSVLogger(save_dir=run_dir, name="logs", version=""),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=config.progress_bar,
        enable_model_summary=True,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        log_every_n_steps=config.log_every_n_steps,
        deterministic="warn",
    )


def _folder_record(cache: FaceCache, folder: str, train: int, val: int) -> dict[str, Any]:
    r = cache.report
    return {
        "folder": folder,
        "images_labelled_68": r["images_labelled_68"],
        "faces_detected": r["faces"],
        "faces_train": train,
        "faces_validation": val,
        "undetected": r["undetected"],
        "skipped_not_68_points": r["skipped_not_68_points"],
        "licence": r["licence"],
    }


def _write_json(path: Path, data: Any) -> None:
    if rank_zero_only.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))


def run_training(config: TrainConfig) -> RunResult:
    """Options checked -> faces prepared and split -> starting network and statistics -> run files ->
    fit (checkpoints written by ``ExportCheckpoints``) -> report."""
    if not config.data:
        raise ValueError("no training folders given (--data FOLDER ...)")
    started, load_before = time.perf_counter(), os.getloadavg()
    run_dir = Path(config.runs) / config.name
    rank_zero_only(print)(f"training config:\n{config.describe()}")
    L.seed_everything(config.seed, workers=True)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    heads = head_names(config)
    earlier = earlier_stages(config)

    faces = load_faces(config, heads)
    network, mean, std, initial = starting_network(config, faces)
    metadata = checkpoint_metadata(config, faces, heads, earlier, initial)
    _write_json(run_dir / "config.json", config.to_dict())
    _write_json(run_dir / "split.json", split_record(config, faces))
    _write_json(run_dir / "prepare.json", [c.report for c in faces.caches])

    train_loader, val_loader = data_loaders(config, faces)
    export = ExportCheckpoints(run_dir, onet_config(config), mean, std, metadata, bool(faces.val), earlier)
    trainer = make_trainer(
        config, run_dir, [export, LearningRateMonitor(logging_interval="epoch"), EpochLine()], bool(faces.val)
    )
    fit_started = time.perf_counter()
    trainer.fit(LandmarkModule(network, config, mean, std), train_loader, val_loader if faces.val else None)
    fit_seconds = time.perf_counter() - fit_started

    report = {
        "fit_seconds": round(fit_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "best_epoch": export.best_epoch,
        "best_val_nme_box_crops": export.best_nme,
        "epochs": config.epochs,
        "faces_train": len(faces.train),
        "faces_validation": len(faces.val),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "accelerator": str(trainer.accelerator.__class__.__name__),
        "world_size": trainer.world_size,
        "val_history": export.history,
    }
    _write_json(run_dir / "train_report.json", report)
    rank_zero_only(print)(
        f"done in {fit_seconds:.0f} s of fitting; best validation NME (box) {export.best_nme:.4f} at epoch "
        f"{export.best_epoch} -> {run_dir / 'best.pt'}"
    )
    return RunResult(run_dir, run_dir / "best.pt", export.best_epoch, export.best_nme, fit_seconds)
