"""Reading a stage's other landmark head: the same network's points in another label convention."""

import numpy as np
import pytest
import torch

from app.inference.checkpoint import LoadedModel, Stage
from app.inference.model import ONetConfig, build_model
from training.heads import select_heads, serve_head

CONFIG = ONetConfig(channels=(4, 8, 8, 16), fc_features=16, heads=("300w", "aflw2000"), error_head=True)


def stage(config: ONetConfig, seed: int) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    network = build_model(config).eval()
    for parameter in network.parameters():  # no two heads alike, whatever the initialisation
        torch.nn.init.normal_(parameter, std=0.1)
    return network, np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)


def cascade() -> LoadedModel:
    first, mean, std = stage(CONFIG, 0)
    second, mean2, std2 = stage(CONFIG, 1)
    refinement = Stage(second, CONFIG, mean2, std2, "landmarks")
    return LoadedModel(first, CONFIG, mean, std, metadata={"name": "test"}, refinements=[refinement])


def test_the_other_head_of_the_last_stage_becomes_the_served_one() -> None:
    model = cascade()
    crops = torch.rand(5, 3, 62, 62)
    with torch.inference_mode():
        points, error = model.refinements[0].network.outputs(crops)
        swapped = serve_head(model, "aflw2000")
        new_points, new_error = swapped.refinements[0].network.outputs(crops)
    assert swapped.output_config.heads == ("aflw2000", "300w")
    torch.testing.assert_close(new_points[:, 0], points[:, 1])
    torch.testing.assert_close(new_points[:, 1], points[:, 0])
    torch.testing.assert_close(new_error, error)
    assert not torch.allclose(points[:, 0], points[:, 1])
    # Earlier stages still frame with their own served head; the model it came from is unchanged.
    assert swapped.network is model.network and swapped.config.heads == ("300w", "aflw2000")
    assert model.output_config.heads == ("300w", "aflw2000")


def test_a_single_stage_model_and_an_unknown_head() -> None:
    network, mean, std = stage(CONFIG, 2)
    model = LoadedModel(network, CONFIG, mean, std, metadata={})
    crops = torch.rand(2, 3, 62, 62)
    with torch.inference_mode():
        expected = network.outputs(crops)[0][:, 1]
        torch.testing.assert_close(serve_head(model, "aflw2000").network(crops), expected)
    assert serve_head(model, "300w").config.heads == ("300w", "aflw2000")
    with pytest.raises(ValueError, match="menpo"):
        serve_head(model, "menpo")


def test_select_heads_keeps_the_named_rows_in_order() -> None:
    network, _, _ = stage(CONFIG, 3)
    weights = network.state_dict()
    kept = select_heads(weights, CONFIG, ["aflw2000"])
    torch.testing.assert_close(kept["landmarks.weight"], weights["landmarks.weight"][136:])
    torch.testing.assert_close(kept["features.0.weight"], weights["features.0.weight"])
    assert select_heads(weights, CONFIG, ["300w", "aflw2000"]) is weights
