"""Landmark heads of a trained stage: keep some of them (fine-tuning on fewer conventions) or put another
one first (measuring a checkpoint in another label convention). The served head is always the first."""

import dataclasses

import torch

from app.inference.checkpoint import LoadedModel
from app.inference.model import ONetConfig, build_model


def select_heads(
    weights: dict[str, torch.Tensor], config: ONetConfig, heads: list[str]
) -> dict[str, torch.Tensor]:
    """``weights`` of an ONet with ``config.heads`` reduced to the landmark heads named in ``heads`` (in
    that order): e.g. a stage trained on two conventions fine-tuned on one of them. The trunk, the fully
    connected layer and the error head are kept whole."""
    if list(config.heads) == heads:
        return weights
    rows = config.num_points * 2
    index = torch.cat([torch.arange(rows) + config.heads.index(h) * rows for h in heads])
    return {k: v[index] if k in ("landmarks.weight", "landmarks.bias") else v for k, v in weights.items()}


def serve_head(model: LoadedModel, head: str) -> LoadedModel:
    """``model`` with ``head`` first in its last stage, so that the predictor returns that convention's
    points (the earlier stages still frame with theirs). For measurements only: ``ship`` never writes
    such a model, and the error head still estimates the error of the head it was trained on."""
    last = model.stages[-1]
    if head not in last.config.heads:
        raise ValueError(f"the last stage has the heads {list(last.config.heads)}, not {head!r}")
    heads = [head, *(h for h in last.config.heads if h != head)]
    config = dataclasses.replace(last.config, heads=tuple(heads))
    network = build_model(config)
    network.load_state_dict(select_heads(last.network.state_dict(), last.config, heads))
    network.eval()
    if model.refinements:
        stage = dataclasses.replace(last, network=network, config=config)
        return dataclasses.replace(model, refinements=[*model.refinements[:-1], stage])
    return dataclasses.replace(model, network=network, config=config)
