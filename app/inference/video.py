"""Video files -> frames, one at a time, and the lines of a tracked video.

Frames are decoded one after another by OpenCV's bundled FFmpeg (MP4/H.264, AVI with MJPEG or XVID,
WebM, WMV, ...): only the frame at hand is ever in memory. Everything a file's header announces is
checked before the first frame is tracked: that it is a video at all (not a photo, not random bytes),
its frame rate, its size against the pixel and detection limits, and its length against the frame
limit. :func:`video_lines` is the one path from a file to the lines that ``POST /landmarks/video``
streams and ``face-landmarks video`` writes.
"""

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from app.inference.errors import InvalidVideoError, TooManyFramesError, TooManyPixelsError
from app.inference.predictor import LandmarkPredictor
from app.inference.tracking import FaceTracker, TrackedFace, TrackerOptions

# The containers FFmpeg may open, reading local files only. Others read the files or URLs that a script
# inside the upload names (concat, recognised from its first line; HLS playlists). OpenCV reads this at
# each open; set here, at import, because setting the environment while other threads read it is unsafe.
FFMPEG_CAPTURE_OPTIONS = (
    "format_whitelist;mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm,asf,mpegts,mpeg,ogg,flv"
    "|protocol_whitelist;file"
)
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_CAPTURE_OPTIONS)

# A frame rate past this is no real video's (a broken header): refused like a missing one.
MAX_FPS = 1000.0
# ... and under this (one frame in 100 s): an MP4 whose timescale is 0 plays at 0.002 fps in FFmpeg.
MIN_FPS = 0.01


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # as the header announces it; 0 when it does not say

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "fps": round(self.fps, 3), "frames": self.frames}


@dataclass(frozen=True)
class VideoLimits:
    max_pixels: int  # per frame
    max_frames: int  # frames decoded


# The first bytes of every container served. FFmpeg is handed nothing else: whatever its version and
# options, a playlist, a concat script or a text file never reaches a demuxer that reads what it names.
_BOX_TYPES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")  # MP4 / QuickTime, at 4


def container(head: bytes) -> str | None:
    """The container family of a file from its first bytes (at least 189 of them, for MPEG-TS), or None."""
    if head[4:8] in _BOX_TYPES:
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if len(head) > 188 and head[0] == head[188] == 0x47:
        return "mpegts"
    return None


def _photo_format(path: Path) -> str | None:
    """The format's name when the file is a photo Pillow reads (FFmpeg would play it as a 1-frame video)."""
    try:
        with Image.open(path) as image:
            return image.format
    except Exception:
        return None


class VideoReader:
    """A video file opened for decoding, its header checked. Use as a context manager."""

    def __init__(self, path: str | Path, limits: VideoLimits) -> None:
        path = Path(path)
        photo = _photo_format(path)
        if photo is not None:
            raise InvalidVideoError(f"the file is a {photo} photo, not a video: send it to POST /landmarks")
        with path.open("rb") as file:
            if container(file.read(512)) is None:
                raise InvalidVideoError(
                    "the file is not a decodable video (MP4, MOV, AVI, WebM, MKV, WMV, MPEG, Ogg or FLV)"
                )
        # As many decoder threads as OpenCV may use (the service sets LANDMARKS_TORCH_THREADS, 1): FFmpeg
        # would otherwise start its own per video, and a worker meant for one core would take two.
        threads = [cv2.CAP_PROP_N_THREADS, max(1, cv2.getNumThreads())]
        self._capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, threads)
        try:
            self.info = self._check(limits)
        except Exception:
            self.close()
            raise
        self.limits = limits
        self.complete = True  # False once frames() stops at max_frames instead of the video's end

    def _check(self, limits: VideoLimits) -> VideoInfo:
        capture = self._capture
        if not capture.isOpened():
            raise InvalidVideoError("the file is not a decodable video")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        if width <= 0 or height <= 0:
            raise InvalidVideoError("the video has no picture size")
        if not math.isfinite(fps) or fps < MIN_FPS or fps > MAX_FPS:
            raise InvalidVideoError(f"the video declares a frame rate of {fps:g} frames per second")
        if width * height > limits.max_pixels:
            raise TooManyPixelsError(
                f"the video's frames are {width}x{height} = {width * height} pixels; "
                f"the limit is {limits.max_pixels} per frame"
            )
        ok, first = capture.read()
        if not ok or first is None:
            raise InvalidVideoError("the video has no decodable frame")
        self._first: np.ndarray | None = first
        # The decoded frame's size: a phone video's rotation (OpenCV applies it) swaps the header's.
        return VideoInfo(first.shape[1], first.shape[0], fps, frames)

    def frames(
        self, stride: int = 1, max_frames: int | None = None
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time in seconds, RGB frame) of every ``stride``-th frame, at most ``max_frames`` of
        them. Raises ``TooManyFramesError`` past the frame limit (every frame decoded counts, skipped
        ones too) and ``TooManyPixelsError`` for a frame past the pixel limit."""
        index = 0
        returned = 0
        previous_time = -1.0
        while max_frames is None or returned < max_frames:
            if index >= self.limits.max_frames:
                raise TooManyFramesError(
                    f"the video is longer than the limit of {self.limits.max_frames} frames: "
                    "send a shorter clip, or set max_frames or stride"
                )
            wanted = index % stride == 0
            if index == 0:
                frame, self._first = self._first, None
                ok = frame is not None
            else:
                ok = self._capture.grab()
                if ok and wanted:
                    ok, frame = self._capture.retrieve()
            if not ok:
                return
            if wanted:
                if frame.shape[0] * frame.shape[1] > self.limits.max_pixels:
                    # A stream whose frame size changes midway: the header's size was checked.
                    raise TooManyPixelsError("a frame of the video is larger than the pixel limit")
                seconds = self._time(index, previous_time)
                previous_time = seconds
                yield index, seconds, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                returned += 1
            index += 1
        self.complete = False

    def _time(self, index: int, previous: float) -> float:
        """The frame's presentation time from the container (right for variable frame rates, as phones
        record), or index / fps where the container gives none that moves forward."""
        seconds = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if index == 0 or not math.isfinite(seconds) or seconds <= previous:
            return index / self.info.fps
        return seconds

    def check_length(self, stride: int = 1, max_frames: int | None = None) -> None:
        """Refuse at once a video whose header announces more frames than the limit lets decode for
        this request (``stride`` and ``max_frames`` may bring it within)."""
        needed = self.info.frames if max_frames is None else min(self.info.frames, max_frames * stride)
        if needed > self.limits.max_frames:
            raise TooManyFramesError(
                f"the video has {self.info.frames} frames; the limit is {self.limits.max_frames}: "
                "send a shorter clip, or set max_frames or stride"
            )

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncation(reader: VideoReader, last_index: int, stride: int) -> str | None:
    """Why a video ended before the frames its header announced, or None if it did not. Containers
    often announce a frame or two more than they hold: only a real shortfall counts."""
    announced = reader.info.frames
    if not reader.complete or announced == 0 or last_index + stride + 2 >= announced:
        return None
    return f"the video ends after frame {last_index} of the {announced} its header announces (truncated?)"


def video_lines(
    predictor: LandmarkPredictor,
    reader: VideoReader,
    options: TrackerOptions,
    *,
    stride: int = 1,
    max_frames: int | None = None,
    on_frame: Callable[[np.ndarray, list[TrackedFace]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """The lines of a tracked video: the header, one per processed frame, then the summary (or an
    ``error`` line, for a video that turns out to be broken after its first frame). Each ``next`` does
    one frame's work, so a caller can interleave, pace or stop it between frames. ``on_frame`` sees each
    processed frame with its faces (the CLI draws them)."""
    started = time.perf_counter()
    reader.check_length(stride, max_frames)
    tracker = FaceTracker(predictor, options)
    yield {"video": reader.info.to_dict(), "model": {"name": predictor.name, "version": predictor.version}}
    last = -1
    for index, seconds, frame in reader.frames(stride, max_frames):
        faces = tracker.update(frame, seconds)
        if on_frame is not None:
            on_frame(frame, faces)
        last = index
        yield {"frame": index, "time": round(seconds, 4), "faces": [face.to_dict() for face in faces]}
    cut = truncation(reader, last, stride)
    if cut is not None:
        yield {"error": {"code": "truncated_video", "message": cut, "frames": tracker.frames}}
        return
    yield {"summary": {**tracker.summary, "seconds": round(time.perf_counter() - started, 3)}}
