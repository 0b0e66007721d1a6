"""POST /landmarks/video in-process, on real clips: the formats, the NDJSON lines, the query, the limits."""

import json
from pathlib import Path

import pytest

from tests.conftest import LFPW, make_client, wait_ready
from tests.media import SHARED_CLIPS, VIDEOS, clip_frames, write_video


def post_video(client, path: Path, params: dict | None = None, content_type: str = "video/mp4"):
    with open(path, "rb") as handle:
        return client.post(
            "/landmarks/video", params=params, files={"video": (path.name, handle, content_type)}
        )


def lines_of(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def frame_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if "frame" in line]


@pytest.fixture(scope="module")
def talking_frames():
    return clip_frames("talking_head.mp4", 12)


@pytest.mark.parametrize("clip", SHARED_CLIPS, ids=lambda p: p.name)
def test_every_shared_clip_decodes_and_its_faces_are_found(client, clip):
    lines = lines_of(post_video(client, clip, {"max_frames": 4}))
    header = lines[0]
    assert set(header["video"]) == {"width", "height", "fps", "frames"}
    assert header["video"]["width"] > 0 and header["video"]["fps"] > 0 and header["video"]["frames"] > 100
    assert header["model"]["name"] and header["model"]["version"]
    frames = frame_lines(lines)
    assert [line["frame"] for line in frames] == [0, 1, 2, 3]
    assert all(line["faces"] for line in frames), "dlib finds a face in the first frames of every clip"
    assert lines[-1]["summary"]["frames"] == 4


@pytest.mark.parametrize(
    "suffix, fourcc",
    [(".avi", "MJPG"), (".avi", "XVID"), (".webm", "VP80"), (".wmv", "WMV2"), (".mp4", "mp4v")],
)
def test_containers_and_codecs_beyond_the_shared_ones(client, tmp_path, talking_frames, suffix, fourcc):
    path = write_video(tmp_path / f"clip{suffix}", talking_frames, fps=25.0, fourcc=fourcc)
    lines = lines_of(post_video(client, path, content_type="application/octet-stream"))
    assert lines[0]["video"]["width"] == 512 and lines[0]["video"]["fps"] == pytest.approx(25.0)
    frames = frame_lines(lines)
    assert len(frames) == len(talking_frames)
    assert {face["track_id"] for line in frames for face in line["faces"]} == {1}


def test_each_frame_has_the_face_object_of_the_photo_route_plus_its_track(client):
    lines = lines_of(post_video(client, VIDEOS / "talking_head.mp4", {"max_frames": 12}))
    frames = frame_lines(lines)
    for line in frames:
        assert line["time"] == pytest.approx(line["frame"] / 25.0, abs=1e-3)
        (face,) = line["faces"]
        assert set(face) == {
            "track_id",
            "box",
            "score",
            "landmarks",
            "pose",
            "error_estimate",
            "detected",
        }
        assert isinstance(face["track_id"], int)
        assert len(face["landmarks"]) == 68 and all(len(p) == 2 for p in face["landmarks"])
        assert set(face["pose"]) == {"yaw", "pitch", "roll"}
        assert 0 < face["error_estimate"] < 0.1
    # The detector ran on frames 0 and 10 (every LANDMARKS_TRACK_DETECT_EVERY = 10 frames).
    assert [line["faces"][0]["detected"] for line in frames] == [i % 10 == 0 for i in range(12)]
    assert lines[-1]["summary"]["detector_runs"] == 2
    assert lines[-1]["summary"]["tracks"] == 1
    assert set(lines[-1]["summary"]) == {"frames", "tracks", "detector_runs", "seconds"}


def test_the_points_land_where_the_photo_route_puts_them(client, tmp_path, talking_frames):
    """The first frame is the photo path exactly; later frames are followed, within a pixel or two."""
    import cv2

    lines = lines_of(post_video(client, VIDEOS / "talking_head.mp4", {"max_frames": 6, "smoothing": "false"}))
    for line, frame in zip(frame_lines(lines), talking_frames, strict=False):
        photo = tmp_path / "frame.png"
        cv2.imwrite(str(photo), frame)
        with open(photo, "rb") as handle:
            answer = client.post("/landmarks", files={"image": ("f.png", handle, "image/png")}).json()
        (expected,) = answer["faces"]
        (got,) = line["faces"]
        error = (
            sum(
                ((a - c) ** 2 + (b - d) ** 2) ** 0.5
                for (a, b), (c, d) in zip(got["landmarks"], expected["landmarks"], strict=True)
            )
            / 68
        )
        assert error < (0.01 if line["frame"] == 0 else 0.015) * expected["box"]["width"]


def test_stride_and_max_frames(client):
    lines = lines_of(post_video(client, VIDEOS / "talking_head.mp4", {"stride": 3, "max_frames": 5}))
    assert [line["frame"] for line in frame_lines(lines)] == [0, 3, 6, 9, 12]
    assert lines[-1]["summary"]["frames"] == 5


def test_smoothing_false_gives_other_points_than_smoothing_true(client):
    smooth = frame_lines(lines_of(post_video(client, VIDEOS / "talking_head.mp4", {"max_frames": 8})))
    raw = frame_lines(
        lines_of(post_video(client, VIDEOS / "talking_head.mp4", {"max_frames": 8, "smoothing": "false"}))
    )
    assert smooth[0]["faces"][0]["landmarks"] == raw[0]["faces"][0]["landmarks"]
    assert smooth[7]["faces"][0]["landmarks"] != raw[7]["faces"][0]["landmarks"]


def test_upsample_is_validated_like_the_photo_routes(client):
    response = post_video(client, VIDEOS / "talking_head.mp4", {"upsample": "7"})
    assert response.status_code == 422


@pytest.mark.parametrize(
    "body, code",
    [
        (b"\x00\x01random bytes" * 500, "invalid_video"),
        ((LFPW / "image_0001.png").read_bytes(), "invalid_video"),
        (b"", "invalid_video"),
    ],
    ids=["random", "photo", "empty"],
)
def test_a_file_that_is_no_video_is_400_invalid_video(client, body, code):
    response = client.post("/landmarks/video", files={"video": ("x.mp4", body, "video/mp4")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_a_missing_video_field_is_400_with_the_field_named(client):
    response = client.post("/landmarks/video", files={"image": ("x.mp4", b"abc", "video/mp4")})
    assert response.status_code == 400
    assert "'video'" in response.json()["error"]["message"]


def test_limits_are_413_with_a_clear_error():
    clip = VIDEOS / "talking_head.mp4"  # 512x512, 200 frames, about 700 KB
    with make_client(max_video_bytes=100_000, max_video_frames=50, max_pixels=200_000) as client:
        wait_ready(client)
        too_big = post_video(client, clip)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
        assert "100000 bytes" in too_big.json()["error"]["message"]
    with make_client(max_video_frames=50) as client:
        wait_ready(client)
        too_long = post_video(client, clip)
        assert too_long.status_code == 413
        assert too_long.json()["error"]["code"] == "too_many_frames"
        assert "50" in too_long.json()["error"]["message"]
        # max_frames and stride bring it within the limit.
        assert post_video(client, clip, {"max_frames": 10, "stride": 4}).status_code == 200
    with make_client(max_pixels=200_000) as client:
        wait_ready(client)
        too_large = post_video(client, clip)
        assert too_large.status_code == 413
        assert too_large.json()["error"]["code"] == "too_many_pixels"


def test_openapi_documents_the_route_its_body_and_its_stream(client):
    operation = client.get("/openapi.json").json()["paths"]["/landmarks/video"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["video"]
    assert "application/x-ndjson" in operation["responses"]["200"]["content"]
    assert "track_id" in operation["responses"]["200"]["description"]
    assert {p["name"] for p in operation["parameters"]} >= {"stride", "max_frames", "smoothing", "upsample"}
    assert {"400", "413"} <= set(operation["responses"])


def test_large_videos_decode_one_after_another_within_the_worker_pixel_budget():
    """Each video holds its frame pixels for its whole length (its decoder keeps buffers that large):
    with room for one 512x512 video, a second one waits, and past the queue timeout is told to retry."""
    clip = VIDEOS / "talking_head.mp4"
    with make_client(max_pixels=300_000, queue_timeout_seconds=0.5) as client:
        wait_ready(client)
        with (
            open(clip, "rb") as first,
            client.stream(
                "POST", "/landmarks/video", files={"video": ("a.mp4", first, "video/mp4")}
            ) as running,
        ):
            assert running.status_code == 200
            lines = running.iter_lines()
            assert "video" in json.loads(next(lines))
            second = post_video(client, clip, {"max_frames": 2})
            assert second.status_code == 503
            assert second.json()["error"]["code"] == "overloaded"
            assert "Retry-After" in second.headers
            assert "summary" in json.loads(list(lines)[-1])
        # The first one is done: the next video gets the budget.
        assert post_video(client, clip, {"max_frames": 2}).status_code == 200
