"""What a landmark network is, without the network: the config every checkpoint and every ONNX export
stores, and that the predictor reads (input size, points, heads, error head). Imports no torch, so the
service can describe a model it runs on an ONNX runtime."""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ONetConfig:
    """Everything needed to rebuild the network; stored in every checkpoint."""

    arch: str = "onet"
    input_size: int = 62
    in_channels: int = 3
    num_points: int = 68
    # Output channels of the four convolutions (MTCNN's ONet: 32, 64, 64, 128).
    channels: tuple[int, int, int, int] = (32, 64, 64, 128)
    fc_features: int = 256
    batch_norm: bool = True
    dropout: float = 0.0
    # Label conventions of the landmark heads; the first is the one served.
    heads: tuple[str, ...] = ("300w",)
    # An extra output: log of the expected NME of this network's points (mean error / frame side).
    error_head: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["heads"] = list(self.heads)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ONetConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("channels", "heads"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)
