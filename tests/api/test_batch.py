"""POST /landmarks/batch: request order, ids, per-image errors, the limits, one network pass."""

import base64

import pytest

from app.api.schemas import BatchResponse
from app.api.state import service_state
from tests.api.test_errors import assert_error
from tests.conftest import LFPW, PHOTOS, assert_same_faces, make_client, wait_ready
from tests.inference.test_predictor import count_regress_calls

FACES = [LFPW / f"image_000{i}.png" for i in (1, 2, 3, 4, 5)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def single(client, data: bytes, **params) -> dict:
    response = client.post("/landmarks", params=params, files={"image": ("x", data)})
    assert response.status_code == 200
    return response.json()


def batch_json(client, items: list[dict], **params):
    return client.post("/landmarks/batch", params=params, json={"images": items})


def test_json_batch_answers_each_image_in_order_as_the_single_route_does(client):
    paths = [*FACES, PHOTOS / "dogs.jpg"]
    items = [{"id": f"photo-{i}", "image": b64(p.read_bytes())} for i, p in enumerate(paths)]
    items[2].pop("id")
    response = batch_json(client, items)
    assert response.status_code == 200
    body = response.json()
    BatchResponse.model_validate(body)
    assert body["model"] == single(client, paths[0].read_bytes())["model"]
    for index, (path, result) in enumerate(zip(paths, body["results"], strict=True)):
        expected = {"index": index, **({"id": f"photo-{index}"} if index != 2 else {})}
        answer = single(client, path.read_bytes())
        assert {k: v for k, v in result.items() if k != "faces"} == {
            **expected,
            "image": answer["image"],
            "detection": answer["detection"],
        }
        assert_same_faces(result["faces"], answer["faces"])
    assert body["results"][-1]["faces"] == []


def test_multipart_batch_names_each_result_by_its_file(client):
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in FACES[:3]]
    multipart = client.post("/landmarks/batch", files=files).json()["results"]
    as_json = batch_json(client, [{"image": b64(p.read_bytes())} for p in FACES[:3]]).json()["results"]
    assert [r["id"] for r in multipart] == [p.name for p in FACES[:3]]
    assert [{k: v for k, v in r.items() if k != "id"} for r in multipart] == as_json


def test_one_bad_image_never_fails_the_others(client):
    good = b64(FACES[0].read_bytes())
    items = [
        {"id": "good", "image": good},
        {"id": "not base64", "image": "%%%"},
        {"id": "truncated", "image": b64(FACES[1].read_bytes()[:500])},
        {"id": "text", "image": "data:text/plain;base64," + b64(b"hello")},
        {"id": "good again", "image": good},
    ]
    results = batch_json(client, items).json()["results"]
    assert [r["id"] for r in results] == [i["id"] for i in items]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        "invalid_image",
        "invalid_image",
        "unsupported_media_type",
        None,
    ]
    assert [r["error"]["status"] for r in results[1:4]] == [400, 400, 415]
    assert all(set(r) == {"index", "id", "error"} for r in results[1:4])
    assert results[0]["faces"] == results[4]["faces"] == single(client, FACES[0].read_bytes())["faces"]


def test_query_parameters_apply_to_every_image(client):
    group = b64((PHOTOS / "bald_guys.jpg").read_bytes())
    small_faces = b64((PHOTOS / "2008_007676.jpg").read_bytes())
    results = batch_json(client, [{"image": group}, {"image": small_faces}], max_faces=2).json()["results"]
    assert len(results[0]["faces"]) == 2
    upsampled = batch_json(client, [{"image": small_faces}], upsample=1).json()["results"][0]
    assert_same_faces(upsampled["faces"], single(client, base64.b64decode(small_faces), upsample=1)["faces"])


def test_the_faces_of_all_images_go_through_the_network_together(client, monkeypatch):
    calls = count_regress_calls(service_state(client.app).predictor, monkeypatch)
    items = [{"image": b64(p.read_bytes())} for p in [*FACES, PHOTOS / "dogs.jpg", FACES[0], FACES[1]]]
    results = batch_json(client, items).json()["results"]
    # One call of each stage's network over the 7 faces of all images.
    assert calls == [sum(len(r["faces"]) for r in results)] * 2 == [7, 7]


def test_images_over_the_pixel_budget_together_take_turns():
    # image_0001-3.png: 247 200, 135 000 and 168 500 pixels; the first two fit in 400 000, not all three.
    with make_client(max_pixels_in_flight=400_000) as small, pytest.MonkeyPatch.context() as patch:
        wait_ready(small)
        calls = count_regress_calls(service_state(small.app).predictor, patch)
        items = [{"image": b64(p.read_bytes())} for p in FACES[:3]]
        results = batch_json(small, items).json()["results"]
        assert [len(r["faces"]) for r in results] == [1, 1, 1]
        assert calls == [2, 2, 1, 1]  # two groups, each through both stages of the cascade
        assert service_state(small.app).pixel_budget.in_use == 0
        for path, result in zip(FACES, results, strict=False):
            assert_same_faces(result["faces"], single(small, path.read_bytes())["faces"])


def test_more_images_than_the_batch_limit_is_422_with_details(client):
    tiny = b64(FACES[0].read_bytes()[:10])
    error = assert_error(batch_json(client, [{"image": tiny}] * 17), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "images"]
    files = [("images", (f"{i}.png", b"x", "image/png")) for i in range(17)]
    error = assert_error(client.post("/landmarks/batch", files=files), 422, "validation_error")
    assert error["details"][0]["type"] == "too_long"
    assert batch_json(client, [{"image": tiny}] * 16).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"images": []}, {"images": "x"}, {"images": [{"id": "a"}]}, {"images": [{"image": "x", "size": 1}]}, {}],
)
def test_malformed_batch_json_is_422(client, body):
    error = assert_error(client.post("/landmarks/batch", json=body), 422, "validation_error")
    assert error["details"]


def test_the_byte_limit_covers_the_whole_batch():
    data = FACES[0].read_bytes()
    with make_client(max_upload_bytes=int(len(data) * 2.5)) as small:
        wait_ready(small)
        assert batch_json(small, [{"image": b64(data)}] * 2).status_code == 200
        assert_error(batch_json(small, [{"image": b64(data)}] * 3), 413, "payload_too_large")
        files = [("images", ("a.png", data, "image/png"))] * 3
        assert_error(small.post("/landmarks/batch", files=files), 413, "payload_too_large")
