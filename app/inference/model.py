"""The landmark network: ONet of MTCNN (Zhang et al. 2016, fig. 2) adapted to a 62x62 input, with only
the landmark head kept. It regresses 68 (x, y) points in normalised frame coordinates (see
``geometry``), unsquashed, since points of tight dlib boxes often fall outside them.

A network may have several landmark heads on one trunk, one per label convention (``heads``, e.g.
``("300w", "aflw2000")``): training supervises each face through the head of its data set's
convention, and ``forward`` returns the first head only, so the served output is always that one.
An optional error head predicts the log of the network's own NME (mean point error / frame side).
"""

import torch
from torch import nn

from app.inference.architecture import ONetConfig

__all__ = ["ARCHITECTURES", "ONet", "ONetConfig", "ServedOutputs", "build_model"]


def _conv(in_ch: int, out_ch: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.PReLU(out_ch))
    return layers


class ONet(nn.Module):
    """conv3-pool3/2-conv3-pool3/2-conv3-pool2/2-conv2-fc-landmarks, PReLU activations."""

    def __init__(self, config: ONetConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.channels
        bn = config.batch_norm
        self.features = nn.Sequential(
            *_conv(config.in_channels, c1, 3, bn),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            *_conv(c1, c2, 3, bn),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            *_conv(c2, c3, 3, bn),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            *_conv(c3, c4, 2, bn),
            nn.Flatten(),
        )
        with torch.no_grad():
            probe = torch.zeros(1, config.in_channels, config.input_size, config.input_size)
            flat = self.features(probe).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, config.fc_features), nn.PReLU(config.fc_features))
        self.dropout = nn.Dropout(config.dropout)
        self.landmarks = nn.Linear(config.fc_features, len(config.heads) * config.num_points * 2)
        self.error = nn.Linear(config.fc_features, 1) if config.error_head else None

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C, S, S) normalised crops -> ((N, heads, num_points, 2) points of every head, (N,) log
        expected NME or None). The error head reads detached features: learning it never moves the
        landmarks."""
        features = self.dropout(self.fc(self.features(x)))
        points = self.landmarks(features).view(-1, len(self.config.heads), self.config.num_points, 2)
        error = self.error(features.detach()).view(-1) if self.error is not None else None
        return points, error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) normalised crops -> (N, num_points, 2) normalised frame coordinates of the first
        (served) head."""
        return self.outputs(x)[0][:, 0]


class ServedOutputs(nn.Module):
    """What the predictor runs: the served head's points and, when the network has one, its error
    estimate, as one (N, num_points * 2 [+ 1]) tensor (a single output traces and fuses simply)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.network, ONet):  # any module mapping crops to (N, points, 2)
            return self.network(x).flatten(1)
        points, error = self.network.outputs(x)
        flat = points[:, 0].flatten(1)
        return flat if error is None else torch.cat([flat, error[:, None]], dim=1)


ARCHITECTURES: dict[str, type[nn.Module]] = {"onet": ONet}


def build_model(config: ONetConfig) -> nn.Module:
    try:
        return ARCHITECTURES[config.arch](config)
    except KeyError:
        raise ValueError(f"unknown architecture {config.arch!r}; known: {sorted(ARCHITECTURES)}") from None
