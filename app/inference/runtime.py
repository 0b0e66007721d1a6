"""The runtimes a stage's network runs on, behind one call: (N, C, S, S) float32 standardised crops ->
(N, outputs) float32 (the served head's points, then the log error estimate when there is one).

- ``onnxruntime`` (the service's default): ONNX Runtime's CPU provider on the stage's ONNX graph. It
  was the faster of the two ONNX runtimes on the request path, the smaller install and the smaller
  worker (docs/PERFORMANCE.md, "Runtime").
- ``openvino``: OpenVINO's CPU plugin on the same graph (an optional install: ``pip install openvino``).
- ``torch``: the checkpoint's torch network, traced and fused (training's runtime, and the reference
  the others are tested against). Needs the train extra.

Each takes a stage whose network is an ``OnnxGraph`` (an export) or a torch module (a checkpoint: the
ONNX runtimes export it in memory first). Only the torch runtime imports torch.
"""

import logging
import threading
import warnings
from typing import Any, Literal, Protocol

import numpy as np

from app.inference.checkpoint import Stage
from app.inference.errors import ModelLoadError
from app.inference.export import OnnxGraph, onnx_graph

logger = logging.getLogger(__name__)

Runtime = Literal["onnxruntime", "openvino", "torch"]
RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino", "torch")
DEFAULT_RUNTIME: Runtime = "onnxruntime"


class Network(Protocol):
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) float32 C-contiguous crops -> (N, outputs) float32."""
        ...


def standardise(crops: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, S, S, C) uint8 crops -> (N, C, S, S) float32, ((crop / 255) - mean) / std per channel."""
    # Channels first while still uint8 (a quarter of the bytes to move), then in-place arithmetic on
    # the contiguous float copy.
    batch = np.ascontiguousarray(crops.transpose(0, 3, 1, 2)).astype(np.float32)
    batch *= (1.0 / (255.0 * std)).astype(np.float32).reshape(1, -1, 1, 1)
    batch -= (mean / std).astype(np.float32).reshape(1, -1, 1, 1)
    return batch


class OnnxRuntimeNetwork:
    """An ONNX graph on ONNX Runtime's CPU provider, ``threads`` intra-op threads, sequential execution,
    every graph optimisation (constant folding, Conv+BatchNorm/activation fusion).

    Calls from several threads take turns: the session's memory arena then holds one pass's activations
    instead of one per request in flight (4 threads on the 24-face photo: peak +25 instead of +58 MiB),
    and a worker has one core's worth of network work to do anyway. Decoding and detection of the other
    requests still run meanwhile."""

    def __init__(self, graph: Any, threads: int | None) -> None:
        import onnxruntime as ort

        ort.disable_telemetry_events()  # no usage telemetry from the service's processes
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one per core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No memory pattern: the pattern planned for one batch size is kept beside the arena's blocks,
        # and batches come in every size from 1 to CHUNK. Without it a worker's networks hold 12 instead
        # of 22 MiB after passes of 8 crops, at the same speed (8.27 against 8.22 ms a pass).
        options.enable_mem_pattern = False
        # Without spinning, an idle worker's intra-op threads (threads > 1) sleep instead of burning CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(graph.data, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._turn = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._turn:
            return self._session.run(None, {self._input: batch})[0]


class OpenVinoNetwork:
    """An ONNX graph compiled by OpenVINO for the CPU, ``threads`` inference threads, one stream, latency
    hint. An infer request serves one call at a time, so each calling thread gets its own."""

    def __init__(self, graph: Any, threads: int | None) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelLoadError("the openvino runtime is not installed (pip install openvino)") from exc
        core = ov.Core()
        model = core.read_model(model=graph.data, weights=b"")
        config: dict[str, Any] = {"NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request.infer({0: batch})[0].copy()


class TorchNetwork:
    """The stage's torch network (ServedOutputs), traced, frozen and fused for the CPU when ``optimise``
    (BatchNorm folded into the convolutions, oneDNN kernels), else eager."""

    def __init__(
        self, network: Any, input_size: int, channels: int, threads: int | None, optimise: bool
    ) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ModelLoadError("the torch runtime needs torch (the train extra)") from exc
        from app.inference.model import ServedOutputs

        if threads:  # torch's thread count is the whole process's: set only when asked to
            torch.set_num_threads(threads)
        self._torch = torch
        served = ServedOutputs(network).eval()
        self._network = optimise_for_cpu(served, input_size, channels) if optimise else served

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._network(self._torch.from_numpy(batch)).numpy()


def optimise_for_cpu(network: Any, input_size: int, channels: int) -> Any:
    """The torch network traced, frozen and fused for CPU inference: about twice as fast as eager mode
    for this small net. Falls back to the eager network if tracing fails or the traced graph disagrees
    with it."""
    import torch

    probe = torch.rand(2, channels, input_size, input_size)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimised = torch.jit.optimize_for_inference(torch.jit.trace(network, probe))
            if torch.allclose(optimised(probe), network(probe), atol=1e-4):
                return optimised
        logger.warning("optimised network disagrees with eager mode; serving eager mode")
    except Exception:
        logger.warning("could not optimise the network; serving eager mode", exc_info=True)
    return network


def load_network(stage: Stage, runtime: str, *, threads: int | None = None, optimise: bool = True) -> Network:
    """``stage``'s network on ``runtime`` with ``threads`` intra-op threads (None: the runtime's
    default, and torch's process-wide setting left as it is). An ONNX runtime given a torch network
    exports it in memory (needs torch); the torch runtime needs the torch network (a checkpoint, not
    an export)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    network = stage.network
    if runtime == "torch":
        if isinstance(network, OnnxGraph):
            raise ModelLoadError("the torch runtime needs the checkpoint's networks, not their ONNX export")
        return TorchNetwork(network, stage.config.input_size, stage.config.in_channels, threads, optimise)
    graph = network if isinstance(network, OnnxGraph) else onnx_graph(network, stage.config)
    if runtime == "openvino":
        return OpenVinoNetwork(graph, threads)
    return OnnxRuntimeNetwork(graph, threads)
