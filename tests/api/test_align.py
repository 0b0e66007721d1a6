"""POST /landmarks/align and the pose in /landmarks, over HTTP with the real model."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.api.schemas import AlignResponse, LandmarksResponse
from tests.conftest import LFPW, PHOTOS


def post(client, path, route="/landmarks/align", params=None):
    with open(path, "rb") as handle:
        return client.post(route, params=params, files={"image": (path.name, handle, "image/png")})


def test_every_face_in_landmarks_has_a_pose(client) -> None:
    body = LandmarksResponse.model_validate(post(client, PHOTOS / "bald_guys.jpg", "/landmarks").json())
    assert len(body.faces) >= 20
    for face in body.faces:
        assert -90 <= face.pose.yaw <= 90 and -90 <= face.pose.pitch <= 90 and -180 <= face.pose.roll <= 180


@pytest.mark.parametrize("template", ["arcface", "dlib"])
@pytest.mark.parametrize("size", [32, 112, 512])
def test_align_returns_a_png_chip_of_the_size_asked(client, template: str, size: int) -> None:
    response = post(client, LFPW / "image_0001.png", params={"size": size, "template": template})
    assert response.status_code == 200
    body = AlignResponse.model_validate(response.json())
    assert (body.size, body.template, body.border) == (size, template, "black")
    assert len(body.faces) == 1
    face = body.faces[0]
    chip = Image.open(io.BytesIO(base64.b64decode(face.chip)))
    assert chip.format == "PNG" and chip.size == (size, size)
    # The transform takes the returned landmarks to level eyes in the chip.
    matrix = np.array(face.transform)
    points = np.array(face.landmarks) @ matrix[:, :2].T + matrix[:, 2]
    left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    assert abs(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))) <= 1.0
    assert points[:, 0].min() >= 0 and points[:, 0].max() < size


def test_align_defaults_to_arcface_at_112(client) -> None:
    body = post(client, LFPW / "image_0002.png").json()
    assert (body["size"], body["template"]) == (112, "arcface")
    assert {"box", "score", "landmarks", "pose", "transform", "chip"} <= set(body["faces"][0])


def test_align_without_faces_returns_an_empty_list(client) -> None:
    body = post(client, PHOTOS / "dogs.jpg").json()
    assert body["faces"] == []


@pytest.mark.parametrize(
    "params", [{"size": 31}, {"size": 513}, {"template": "mtcnn"}, {"border": "blue"}, {"size": "big"}]
)
def test_align_refuses_bad_parameters(client, params) -> None:
    response = post(client, LFPW / "image_0001.png", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_align_refuses_a_non_image_in_the_json_error_shape(client) -> None:
    response = client.post("/landmarks/align", files={"image": ("x.png", b"not an image", "image/png")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_image"
