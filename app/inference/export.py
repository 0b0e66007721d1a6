"""A checkpoint's networks exported to ONNX, and the model served from that export without torch.

Beside ``models/landmarks.pt`` the export writes, one file per stage of the cascade::

    landmarks.stage1.onnx   (N, C, S, S) float32 "crops" -> (N, points * 2 [+ 1]) float32 "outputs":
    landmarks.stage2.onnx   the served head's points and, with an error head, its log NME (ServedOutputs)
    landmarks.json          the manifest: format, each stage's crop, config, normalisation, ONNX file and
                            its sha256, the checkpoint's metadata, and an "export" record (the checkpoint
                            file and its sha256, opset, torch version, the largest difference between
                            the exported graph and the torch network on real crops)

``load_model`` is what the service calls: it reads the manifest (a ``.json`` path, or the one beside a
``.pt``), checks every checksum, and never imports torch. A manifest whose checkpoint is beside it but
has changed since (re-trained, re-calibrated, re-shipped) is refused rather than served stale.
``export_checkpoint`` (``face-landmarks-train export``; ``ship`` and ``calibrate`` run it too) needs torch.
"""

import datetime as dt
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.architecture import ONetConfig
from app.inference.checkpoint import LoadedModel, Stage, load_checkpoint, stage_of
from app.inference.errors import ModelLoadError
from app.inference.files import write_atomically

EXPORT_FORMAT = "face-landmarks-onnx/1"
# ONNX opset of the exported graphs: supported by every ONNX Runtime and OpenVINO release since 2023.
OPSET = 17
INPUT_NAME = "crops"
OUTPUT_NAME = "outputs"
# Largest difference (normalised frame coordinates, or log NME) the export may show against the torch
# network on the same crops; 1e-4 of a 62-px frame is under 0.01 px of a 100-px face.
EXPORT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OnnxGraph:
    """A stage's network as an ONNX graph (ServedOutputs' inputs and outputs): what the ONNX runtimes
    load. ``sha256`` is that of ``data``, the bytes of the ``.onnx`` file.

    A graph exported in memory (``of``) holds its bytes. One of an export on disk (``at``) holds only
    its path, and ``data`` reads the file and checks its sha256 each time a runtime loads it: a worker
    then keeps no copy beside its runtime's own (4.5 MB of a 140 MiB worker)."""

    sha256: str
    content: bytes | None = None
    path: Path | None = None

    @classmethod
    def of(cls, data: bytes) -> "OnnxGraph":
        return cls(hashlib.sha256(data).hexdigest(), content=data)

    @classmethod
    def at(cls, path: Path, sha256: str) -> "OnnxGraph":
        """The graph in ``path``, checked against ``sha256`` now and at every read; ModelLoadError if
        it is missing or does not match."""
        graph = cls(sha256, path=path)
        graph.data  # noqa: B018 (checked now: a bad export is refused at start-up)
        return graph

    @property
    def data(self) -> bytes:
        if self.content is not None:
            return self.content
        assert self.path is not None, "a graph holds its bytes or the path of its file"
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot read {self.path}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ModelLoadError(f"{self.path.name} does not match its sha256")
        return data


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_path(checkpoint: str | Path) -> Path:
    """Where the export of ``checkpoint`` lives: ``models/landmarks.pt`` -> ``models/landmarks.json``."""
    return Path(checkpoint).with_suffix(".json")


def onnx_graph(network: Any, config: ONetConfig) -> OnnxGraph:
    """A torch network (crops -> points, as ``ServedOutputs`` serves them) exported to ONNX in memory,
    with a dynamic batch axis. Needs torch (the train extra)."""
    import torch

    from app.inference.model import ServedOutputs

    served = ServedOutputs(network).eval()
    probe = torch.rand(2, config.in_channels, config.input_size, config.input_size)
    buffer = io.BytesIO()
    with torch.inference_mode(), warnings.catch_warnings():
        # The TorchScript exporter: one self-contained graph of plain operators, no onnxscript needed.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            served,
            (probe,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "crops"}, OUTPUT_NAME: {0: "crops"}},
        )
    return OnnxGraph.of(buffer.getvalue())


def export_difference(stage: Stage, graph: OnnxGraph, crops: np.ndarray) -> float:
    """Largest absolute difference between the torch network and its ONNX graph (run by ONNX Runtime)
    on ``crops`` ((N, S, S, C) uint8), standardised as the predictor does."""
    import torch

    from app.inference.model import ServedOutputs
    from app.inference.runtime import OnnxRuntimeNetwork, standardise

    batch = standardise(crops, stage.mean, stage.std)
    with torch.inference_mode():
        expected = ServedOutputs(stage.network).eval()(torch.from_numpy(batch)).numpy()
    return float(np.abs(OnnxRuntimeNetwork(graph, threads=1)(batch) - expected).max())


def export_checkpoint(checkpoint: str | Path, probe_crops: list[np.ndarray] | None = None) -> Path:
    """Export every stage of ``checkpoint`` to ONNX beside it, with the manifest; returns the manifest's
    path. ``probe_crops`` (one (N, S, S, C) uint8 array per stage, e.g. real faces) are the crops the
    export is checked on; random crops otherwise. Raises ValueError when a graph disagrees with its
    network by more than ``EXPORT_TOLERANCE``."""
    import torch

    checkpoint = Path(checkpoint)
    model = load_checkpoint(checkpoint)
    rng = np.random.default_rng(0)
    stages, graphs = [], []
    largest = 0.0
    for number, stage in enumerate(model.stages, 1):
        graph = onnx_graph(stage.network, stage.config)
        size, channels = stage.config.input_size, stage.config.in_channels
        crops = (
            probe_crops[number - 1]
            if probe_crops is not None
            else rng.integers(0, 256, (16, size, size, channels), dtype=np.uint8)
        )
        difference = export_difference(stage, graph, crops)
        if difference > EXPORT_TOLERANCE:
            raise ValueError(f"stage {number}: the ONNX graph differs from the network by {difference:.2e}")
        largest = max(largest, difference)
        name = f"{checkpoint.stem}.stage{number}.onnx"
        graphs.append((checkpoint.with_name(name), graph))
        stages.append(
            {
                "crop": stage.crop,
                "config": stage.config.to_dict(),
                "normalization": {
                    "mean": [float(v) for v in stage.mean],
                    "std": [float(v) for v in stage.std],
                },
                "onnx": name,
                "sha256": graph.sha256,
                "bytes": len(graph.data),
            }
        )
    manifest = {
        "format": EXPORT_FORMAT,
        "stages": stages,
        "metadata": model.metadata,
        "export": {
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": sha256_of(checkpoint),
            "opset": OPSET,
            "torch": torch.__version__,
            "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "max_difference": largest,
            "checked_on": "given crops" if probe_crops is not None else "random crops",
        },
    }
    for path, graph in graphs:
        write_atomically(path, lambda tmp, data=graph.data: tmp.write_bytes(data))
    # The manifest last: a reader that finds it finds the graphs it names.
    text = json.dumps(manifest, indent=1) + "\n"
    return write_atomically(manifest_path(checkpoint), lambda tmp: tmp.write_text(text))


def load_export(path: str | Path) -> LoadedModel:
    """The model an export manifest describes, its networks as ``OnnxGraph``s (no torch). Raises
    ModelLoadError for a missing or corrupt file, a checksum that does not match, or a checkpoint beside
    it that is not the one it was exported from."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model export not found: {path}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"model export {path} is unreadable or corrupt: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ModelLoadError(f"{path} is not a face-landmarks export (expected format {EXPORT_FORMAT!r})")
    record = dict(manifest.get("export") or {})
    source = path.with_name(str(record.get("checkpoint", "")))
    if record.get("checkpoint") and source.is_file() and sha256_of(source) != record.get("checkpoint_sha256"):
        raise ModelLoadError(
            f"{path} was exported from another version of {source}: export it again "
            "(face-landmarks-train export)"
        )
    try:
        stages = [_load_stage(path, item) for item in manifest["stages"]]
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"model export {path} is inconsistent: {exc!r}") from exc
    if not stages or stages[0].crop != "box" or any(s.crop != "landmarks" for s in stages[1:]):
        raise ModelLoadError(f"model export {path}: expected a box stage, then landmark stages")
    keys = ("onnx", "sha256", "bytes")
    record["files"] = [{key: item[key] for key in keys} for item in manifest["stages"]]
    record["manifest"] = path.name
    first = stages[0]
    return LoadedModel(
        first.network,
        first.config,
        first.mean,
        first.std,
        dict(manifest.get("metadata") or {}),
        stages[1:],
        export=record,
    )


def _load_stage(path: Path, item: dict[str, Any]) -> Stage:
    config = ONetConfig.from_dict(item["config"])
    graph_path = path.with_name(item["onnx"])
    if not graph_path.is_file():
        raise ModelLoadError(f"model export {path}: {graph_path.name} not found")
    try:
        graph = OnnxGraph.at(graph_path, item["sha256"])
    except ModelLoadError as exc:
        raise ModelLoadError(f"model export {path}: {exc}") from exc
    return stage_of(graph, config, item, f"model export {path}")


def load_model(path: str | Path, runtime: str) -> LoadedModel:
    """What ``runtime`` serves from ``path``: the torch runtime loads the checkpoint; the ONNX runtimes
    load a manifest (``path`` itself, or the one beside a ``.pt``), or, without one, the checkpoint
    (needs torch; its networks are exported in memory when the predictor is built)."""
    path = Path(path)
    if path.suffix == ".json":
        if runtime == "torch":
            raise ModelLoadError(f"{path}: the torch runtime needs the checkpoint (.pt), not its export")
        return load_export(path)
    if runtime != "torch" and manifest_path(path).is_file():
        return load_export(manifest_path(path))
    return load_checkpoint(path)
