"""face-landmarks video: the lines of POST /landmarks/video for a local file, and a rendered copy."""

import json

import cv2

from app.cli import main
from tests.conftest import SHIPPED_MODEL, make_client, wait_ready
from tests.media import VIDEOS


def test_video_writes_the_lines_of_the_http_answer(tmp_path):
    clip = VIDEOS / "talking_head.mp4"
    out = tmp_path / "landmarks.jsonl"
    assert (
        main(["video", str(clip), "--model", str(SHIPPED_MODEL), "--max-frames", "12", "--out", str(out)])
        == 0
    )
    cli_lines = [json.loads(line) for line in out.read_text().splitlines()]
    with make_client() as client, open(clip, "rb") as handle:
        wait_ready(client)
        answer = client.post(
            "/landmarks/video", params={"max_frames": 12}, files={"video": ("c.mp4", handle)}
        )
    http_lines = [json.loads(line) for line in answer.text.splitlines()]
    assert len(cli_lines) == len(http_lines) == 14
    assert cli_lines[:-1] == http_lines[:-1]  # the summary's seconds differ
    assert {k: v for k, v in cli_lines[-1]["summary"].items() if k != "seconds"} == {
        "frames": 12,
        "tracks": 1,
        "detector_runs": 2,
    }


def test_render_writes_a_playable_video_with_the_points_drawn(tmp_path):
    clip = VIDEOS / "head_turns.avi"
    rendered = tmp_path / "out.mp4"
    args = ["video", str(clip), "--model", str(SHIPPED_MODEL), "--max-frames", "8", "--stride", "2"]
    assert main([*args, "--out", str(tmp_path / "l.jsonl"), "--render", str(rendered)]) == 0
    capture = cv2.VideoCapture(str(rendered))
    drawn = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        drawn.append(frame)
    assert len(drawn) == 8
    assert capture.get(cv2.CAP_PROP_FPS) == 15.0  # 30 fps, every second frame
    original = cv2.VideoCapture(str(clip))
    ok, first = original.read()
    assert ok and cv2.absdiff(drawn[0], first).max() > 100, "the points and the box are drawn on the frame"


def test_a_file_that_is_no_video_fails_with_a_message(tmp_path, capsys):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"no video here" * 100)
    assert main(["video", str(bad), "--model", str(SHIPPED_MODEL), "--out", str(tmp_path / "l.jsonl")]) == 1
    assert "not a decodable video" in capsys.readouterr().err
