"""Videos for the tests, made in temporary folders from the shared clips and photos (never committed)."""

from pathlib import Path

import cv2
import numpy as np

from tests.conftest import DATA

VIDEOS = DATA / "video"
SHARED_CLIPS = sorted(p for p in VIDEOS.iterdir() if p.suffix in {".mp4", ".avi", ".wmv"})


def clip_frames(name: str, count: int, start: int = 0) -> list[np.ndarray]:
    """``count`` BGR frames of a shared clip from frame ``start``."""
    capture = cv2.VideoCapture(str(VIDEOS / name))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, fourcc: str = "MJPG") -> Path:
    """BGR frames written with OpenCV's FFmpeg (MJPG/XVID .avi, mp4v .mp4, VP80 .webm, WMV2 .wmv)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"cannot write {fourcc} to {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
