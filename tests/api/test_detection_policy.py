"""The default detection policy (upsample=auto) on dlib's example photos, with the real model."""

import pytest

from app.api.schemas import LandmarksResponse
from tests.api.test_landmarks import post_file
from tests.conftest import PHOTOS, make_client, wait_ready

# The 9 PASCAL VOC photos of dlib's examples (about 500x375); upsample=0 finds no face in four of them.
PASCAL = sorted(PHOTOS.glob("20*.jpg"))


def faces_and_upsample(client, path, params=None) -> tuple[int, int]:
    response = post_file(client, path, params=params)
    assert response.status_code == 200
    body = LandmarksResponse.model_validate(response.json())
    return len(body.faces), body.detection.upsample


def test_the_pascal_photos_are_all_there():
    assert len(PASCAL) == 9


@pytest.mark.parametrize("path", PASCAL, ids=lambda p: p.name)
def test_default_finds_at_least_the_faces_of_upsample_1(client, path):
    default, used = faces_and_upsample(client, path)
    explicit, _ = faces_and_upsample(client, path, {"upsample": 1})
    assert used == 1, "a 500x375 photo fits the default budget at upsample 1 (750,000 pixels), not at 2"
    assert default >= explicit >= 1


@pytest.mark.parametrize("stem", ["2007_007763", "2008_002470", "2008_004176", "2008_007676"])
def test_default_finds_the_faces_upsample_0_misses(client, stem):
    assert faces_and_upsample(client, PHOTOS / f"{stem}.jpg", {"upsample": 0})[0] == 0
    assert faces_and_upsample(client, PHOTOS / f"{stem}.jpg")[0] >= 6


def test_large_photo_costs_what_upsample_0_costs(client):
    """bald_guys.jpg is 3 MP: auto stays at 0, so it scans what upsample=0 scans and finds the same faces."""
    default = post_file(client, PHOTOS / "bald_guys.jpg").json()
    plain = post_file(client, PHOTOS / "bald_guys.jpg", params={"upsample": 0}).json()
    assert default["detection"] == {"upsample": 0}
    assert default["faces"] == plain["faces"]


@pytest.mark.parametrize("upsample", [0, 1, 2])
def test_explicit_upsample_is_honoured(client, upsample):
    assert faces_and_upsample(client, PASCAL[0], {"upsample": upsample})[1] == upsample
    assert faces_and_upsample(client, PHOTOS / "bald_guys.jpg", {"upsample": upsample})[1] == upsample


def test_render_reports_the_upsampling(client):
    with open(PASCAL[0], "rb") as handle:
        response = client.post("/landmarks/render", files={"image": ("x.jpg", handle, "image/jpeg")})
    assert response.status_code == 200
    assert response.headers["x-detection-upsample"] == "1"


def test_budget_and_detection_limit_are_settings():
    """A larger auto budget reaches upsample 2 on a 500x375 photo (3,000,000 pixels); auto never picks a
    level LANDMARKS_MAX_DETECT_PIXELS refuses, and that limit refuses the default what it refuses 0."""
    photo = PHOTOS / "2008_001322.jpg"  # 500x375
    with make_client(auto_scan_pixels=3_000_000) as client:
        wait_ready(client)
        assert faces_and_upsample(client, photo)[1] == 2
    with make_client(max_detect_pixels=500_000) as client:
        wait_ready(client)
        assert faces_and_upsample(client, photo)[1] == 0
        for params in (None, {"upsample": 0}):
            response = post_file(client, PHOTOS / "bald_guys.jpg", params=params)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "too_many_pixels"


def test_metrics_count_detections_by_upsampling(client):
    def count() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('landmarks_detections_by_upsample_total{upsample="1"}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    faces_and_upsample(client, PASCAL[0])
    assert count() == before + 1
