"""The pydantic schemas (the contract users read in /docs) describe exactly the JSON the one builder
makes (``Photo.to_dict``, ``Face.to_dict``, ``Photo.aligned_faces``): every key documented, no
documented key missing, and each value of the documented type."""

import json
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from app.api.schemas import AlignResponse, BatchResult, FaceOut, LandmarksResponse
from app.cli import main
from app.config import Settings, build_pipeline, build_predictor
from app.inference.pipeline import Photo, Upload
from tests.conftest import LFPW, PHOTOS, SHIPPED_MODEL


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``annotation`` (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list):
        for argument in typing.get_args(annotation):
            found = nested_model(argument)
            if found is not None:
                return found
    return None


def assert_documented(
    model: type[BaseModel], data: dict[str, Any], optional: frozenset[str] = frozenset()
) -> None:
    """``data``'s keys are ``model``'s fields (less ``optional`` ones it may leave out), recursively, and
    the model reads it back to the same JSON."""
    assert set(data) <= set(model.model_fields), (
        f"undocumented in {model.__name__}: {set(data) - set(model.model_fields)}"
    )
    missing = set(model.model_fields) - set(data) - optional
    assert not missing, f"{model.__name__} documents keys the builder does not make: {missing}"
    for name, value in data.items():
        inner = nested_model(model.model_fields[name].annotation)
        if inner is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                assert_documented(inner, item, optional)
    parsed = json.loads(model.model_validate(data).model_dump_json(exclude_unset=True))
    assert parsed == json.loads(json.dumps(data))


@pytest.fixture(scope="module")
def photo() -> Photo:
    pipeline = build_pipeline(Settings(), build_predictor(Settings(model_path=SHIPPED_MODEL)))
    photo = pipeline.run([Upload((PHOTOS / "2008_007676.jpg").read_bytes())], "auto").single()
    assert len(photo.faces) >= 6 and all(face.error_estimate is not None for face in photo.faces)
    return photo


def test_the_face_schema_is_the_face_builders_output(photo):
    for face in photo.faces:
        assert_documented(FaceOut, face.to_dict())


def test_the_response_schemas_are_the_photo_builders_output(photo):
    model = {"name": "m", "version": "1"}
    assert_documented(LandmarksResponse, {**photo.to_dict(), "model": model})
    chips = photo.aligned_faces(64, "arcface", "black")
    extra = {"size": 64, "template": "arcface", "border": "black", "model": model}
    assert_documented(AlignResponse, {**photo.to_dict(faces=chips), **extra})
    # A batch result is the photo's JSON with its position (and id), or an error instead.
    assert_documented(BatchResult, {"index": 0, "id": "a", **photo.to_dict()}, frozenset({"error"}))


def test_a_face_without_an_error_head_leaves_the_optional_field_out(photo):
    face = photo.faces[0].to_dict()
    del face["error_estimate"]  # as a checkpoint without an error head answers
    assert_documented(FaceOut, face, frozenset({"error_estimate"}))


def test_an_undocumented_key_is_caught(photo):
    with pytest.raises(AssertionError, match="undocumented"):
        assert_documented(FaceOut, {**photo.faces[0].to_dict(), "surprise": 1})


def test_the_cli_prints_the_services_json(client, capsys):
    path = LFPW / "image_0001.png"
    assert main(["predict", "--model", str(SHIPPED_MODEL), str(path)]) == 0
    (printed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    served = client.post("/landmarks", files={"image": (path.name, path.read_bytes(), "image/png")}).json()
    assert printed == {"file": str(path), **served}
