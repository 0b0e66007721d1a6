"""Checkpoint files: a cascade round-trips, old single-stage files still load, broken ones are refused."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from app.inference import LandmarkPredictor
from app.inference.checkpoint import LoadedModel, Stage, load_checkpoint, save_checkpoint
from app.inference.errors import ModelLoadError
from app.inference.geometry import Frame, landmark_frame
from app.inference.imaging import decode_image
from app.inference.model import ONetConfig, build_model
from tests.conftest import exit_codes_at_once

LFPW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "samples" / "lfpw"


def _cascade(path: Path) -> Path:
    torch.manual_seed(0)
    first = ONetConfig()
    refine = ONetConfig(heads=("300w", "aflw2000"), error_head=True)
    stage = Stage(build_model(refine).eval(), refine, np.full(3, 0.4), np.full(3, 0.2), "landmarks")
    meta = {"name": "cascade", "version": "9.9.9"}
    model = LoadedModel(build_model(first), first, np.full(3, 0.5), np.full(3, 0.25), meta, [stage])
    return save_checkpoint(path, model)


def test_a_cascade_round_trips_with_every_stage_and_its_statistics(tmp_path: Path) -> None:
    model = load_checkpoint(_cascade(tmp_path / "c.pt"))
    assert [s.crop for s in model.stages] == ["box", "landmarks"]
    assert model.stages is model.stages  # built once, not on every access
    assert model.output_config.heads == ("300w", "aflw2000") and model.output_config.error_head
    np.testing.assert_allclose(model.stages[1].mean, 0.4)
    assert model.version == "9.9.9"


def test_a_cascade_serves_the_first_head_and_an_error_estimate(tmp_path: Path) -> None:
    model = load_checkpoint(_cascade(tmp_path / "c.pt"))
    image = decode_image((LFPW / "image_0001.png").read_bytes(), 10**8)
    predictor = LandmarkPredictor(model, runtime="torch", optimise=False)
    faces = predictor.predict(image)
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)
    assert faces[0].error_estimate is not None and faces[0].error_estimate > 0
    # The served points are the first head's, mapped back from the frame of the first stage's points.
    first, _ = predictor.stages[0].regress(predictor.stages[0].crops(image, [Frame.from_box(faces[0].box)]))
    frame = landmark_frame(Frame.from_box(faces[0].box).to_image(first[0]))
    crop = predictor.stages[1].crops(image, [frame])
    with torch.inference_mode():
        heads, _ = model.refinements[0].network.outputs(torch.from_numpy(predictor.stages[1].normalise(crop)))
    np.testing.assert_allclose(faces[0].landmarks, frame.to_image(heads[0, 0].numpy()), atol=1e-3)
    # The served runtime (ONNX Runtime, the networks exported in memory) and eager torch agree.
    traced = LandmarkPredictor(model).predict(image)
    np.testing.assert_allclose(traced[0].landmarks, faces[0].landmarks, atol=1e-2)


def test_half_precision_storage_halves_the_file_and_serves_nearly_the_same_points(tmp_path: Path) -> None:
    full = load_checkpoint(_cascade(tmp_path / "full.pt"))
    half_path = save_checkpoint(
        tmp_path / "half.pt",
        dataclasses.replace(full, metadata={**full.metadata, "weights_dtype": "float16"}),
    )
    assert half_path.stat().st_size < 0.55 * (tmp_path / "full.pt").stat().st_size
    stored = torch.load(half_path, weights_only=True)
    assert stored["state_dict"]["features.0.weight"].dtype == torch.float16
    assert stored["refinements"][0]["state_dict"]["features.1.num_batches_tracked"].dtype == torch.int64
    half = load_checkpoint(half_path)
    assert all(p.dtype == torch.float32 for s in half.stages for p in s.network.parameters())
    # Re-saved from its own metadata (as calibrate does), the file stays at half precision.
    again = save_checkpoint(tmp_path / "again.pt", half)
    assert torch.load(again, weights_only=True)["state_dict"]["fc.0.weight"].dtype == torch.float16
    image = decode_image((LFPW / "image_0001.png").read_bytes(), 10**8)
    ours = LandmarkPredictor(half, optimise=False).predict(image)[0].landmarks
    reference = LandmarkPredictor(full, optimise=False).predict(image)[0].landmarks
    np.testing.assert_allclose(ours, reference, atol=0.05)  # pixels of a 412x600 photo
    assert not np.array_equal(ours, reference)
    with pytest.raises(ValueError, match="weights_dtype"):
        save_checkpoint(tmp_path / "bad.pt", dataclasses.replace(full, metadata={"weights_dtype": "int8"}))


def _save_repeatedly(model, path: Path, times: int) -> None:
    for _ in range(times):
        save_checkpoint(path, model)


def test_two_processes_saving_one_checkpoint_at_once_both_succeed(tmp_path: Path) -> None:
    # Each writer renames a temporary file of its own (app.inference.files), as the training cache does.
    model = load_checkpoint(_cascade(tmp_path / "c.pt"))
    path = tmp_path / "out" / "landmarks.pt"
    assert exit_codes_at_once(_save_repeatedly, (model, path, 8)) == [0, 0]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert load_checkpoint(path).version == "9.9.9"


def test_a_single_stage_file_of_format_1_still_loads(tmp_path: Path) -> None:
    path = _cascade(tmp_path / "c.pt")
    payload = torch.load(path, weights_only=True)
    payload["format"] = "face-landmarks/1"
    del payload["refinements"]
    torch.save(payload, tmp_path / "old.pt")
    model = load_checkpoint(tmp_path / "old.pt")
    assert [s.crop for s in model.stages] == ["box"] and model.refinements == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p["refinements"][0].update(crop="sideways"),
        lambda p: p["refinements"][0]["normalization"].update(std=[0.0, 1.0, 1.0]),
        lambda p: p["refinements"][0]["state_dict"].pop("landmarks.weight"),
        lambda p: p.update(format="face-landmarks/99"),
    ],
    ids=["unknown crop", "zero std", "missing weights", "unknown format"],
)
def test_a_damaged_cascade_is_refused_with_a_reason(tmp_path: Path, damage) -> None:
    payload = torch.load(_cascade(tmp_path / "c.pt"), weights_only=True)
    damage(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
