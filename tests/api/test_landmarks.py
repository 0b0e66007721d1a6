"""POST /landmarks on real photos with the real model."""

import io

import numpy as np
import pytest
from PIL import Image

from app.api.schemas import LandmarksResponse
from tests.conftest import LFPW, PHOTOS, assert_same_faces
from training.pts import read_pts


def post_file(client, path, params=None, content_type="image/jpeg"):
    with open(path, "rb") as handle:
        return client.post("/landmarks", params=params, files={"image": (path.name, handle, content_type)})


def nme_box(points: np.ndarray, truth: np.ndarray, box: dict) -> float:
    return float(np.linalg.norm(points - truth, axis=1).mean() / np.sqrt(box["width"] * box["height"]))


@pytest.mark.parametrize("stem", ["image_0001", "image_0002", "image_0003", "image_0004", "image_0005"])
def test_real_300w_face_matches_ground_truth(client, stem):
    truth = read_pts(LFPW / f"{stem}.pts")
    response = post_file(client, LFPW / f"{stem}.png", content_type="image/png")
    assert response.status_code == 200
    body = LandmarksResponse.model_validate(response.json())
    # The labelled face is the detection that holds the centre of its points.
    centre = truth.mean(axis=0)
    faces = [
        f
        for f in body.faces
        if f.box.left <= centre[0] <= f.box.left + f.box.width
        and f.box.top <= centre[1] <= f.box.top + f.box.height
    ]
    assert faces, "the labelled face was not detected"
    face = faces[0]
    points = np.array(face.landmarks)
    box = face.box.model_dump()
    error = nme_box(points, truth, box)
    assert error < 0.08
    # The face's error estimate is on the same scale and says these points can be trusted.
    assert face.error_estimate is not None and 0.0 < face.error_estimate < 0.08
    # Every single point stays near its labelled position (a quarter of the box size at most).
    worst = np.linalg.norm(points - truth, axis=1).max() / np.sqrt(box["width"] * box["height"])
    assert worst < 0.25


def test_group_photo_returns_every_face_largest_first(client):
    response = post_file(client, PHOTOS / "bald_guys.jpg")
    assert response.status_code == 200
    body = LandmarksResponse.model_validate(response.json())
    assert body.image.width == 1986 and body.image.height == 1545
    assert len(body.faces) >= 20
    areas = [f.box.width * f.box.height for f in body.faces]
    assert areas == sorted(areas, reverse=True)
    for face in body.faces:
        points = np.array(face.landmarks)
        assert points.shape == (68, 2)
        # Landmarks lie around their own box, in original pixels.
        cx, cy = points.mean(axis=0)
        assert face.box.left <= cx <= face.box.left + face.box.width
        assert face.box.top <= cy <= face.box.top + face.box.height


def test_photo_without_faces_returns_empty_list(client):
    response = post_file(client, PHOTOS / "dogs.jpg")
    assert response.status_code == 200
    body = response.json()
    assert body["faces"] == []
    assert body["image"] == {"width": 900, "height": 916}


def test_max_faces_keeps_the_largest(client):
    everything = post_file(client, PHOTOS / "bald_guys.jpg").json()["faces"]
    limited = post_file(client, PHOTOS / "bald_guys.jpg", params={"max_faces": 3}).json()["faces"]
    assert_same_faces(limited, everything[:3])


def test_upsample_finds_smaller_faces(client):
    path = PHOTOS / "2008_007676.jpg"
    plain = post_file(client, path, params={"upsample": 0}).json()
    upsampled = post_file(client, path, params={"upsample": 1}).json()
    assert len(upsampled["faces"]) > len(plain["faces"])
    assert plain["detection"] == {"upsample": 0} and upsampled["detection"] == {"upsample": 1}


def test_model_block_names_the_served_checkpoint(client):
    body = post_file(client, PHOTOS / "dogs.jpg").json()
    info = client.get("/model").json()
    assert body["model"] == {"name": info["name"], "version": info["version"]}


def test_png_upload_with_alpha_and_grayscale_give_faces(client):
    rgb = Image.open(LFPW / "image_0001.png").convert("RGB")
    for mode in ("RGBA", "L"):
        buffer = io.BytesIO()
        rgb.convert(mode).save(buffer, format="PNG")
        response = client.post("/landmarks", files={"image": ("x.png", buffer.getvalue(), "image/png")})
        assert response.status_code == 200
        assert len(response.json()["faces"]) == 1


def test_render_returns_the_annotated_photo(client):
    with open(LFPW / "image_0001.png", "rb") as handle:
        data = handle.read()
    for fmt, magic in (("png", b"\x89PNG"), ("jpeg", b"\xff\xd8")):
        response = client.post(
            "/landmarks/render", params={"format": fmt}, files={"image": ("x.png", data, "image/png")}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == f"image/{fmt}"
        assert response.content.startswith(magic)
        assert response.headers["x-faces"] == "1"
        drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
        original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert drawn.shape == original.shape
        assert np.abs(drawn.astype(int) - original.astype(int)).sum() > 0


def test_render_draws_the_pose_axes_unless_asked_not_to(client):
    data = (LFPW / "image_0001.png").read_bytes()
    drawn = {}
    for pose in ("true", "false"):
        response = client.post(
            "/landmarks/render",
            params={"format": "png", "pose": pose},
            files={"image": ("x.png", data, "image/png")},
        )
        assert response.status_code == 200
        drawn[pose] = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    # The axes' blue (z) and green (y) strokes are only in the drawing with the pose.
    extra = np.abs(drawn["true"] - drawn["false"]).sum(axis=2) > 0
    assert extra.sum() > 50
    assert (drawn["true"][extra][:, 1] > 150).sum() > 10  # the green y axis
