"""``face-landmarks predict IMAGE... [--draw DIR]``: the service's JSON for local files, one line each.
``face-landmarks video IN [--out landmarks.jsonl] [--render OUT.mp4]``: the lines of POST /landmarks/video.
``face-landmarks serve [--host H] [--port P] [uvicorn options]``: check the checkpoint, then serve."""

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from app.config import Settings, build_pipeline, build_predictor, build_tracker_options, get_settings
from app.inference import InferenceError
from app.inference.detector import AUTO, MAX_UPSAMPLE, UpsamplePolicy
from app.inference.pipeline import Upload
from app.inference.render import draw_faces
from app.inference.tracking import TrackedFace
from app.inference.video import VideoLimits, VideoReader, video_lines

# uvicorn's exit status when start-up fails; ``serve`` exits with it too when the checkpoint is bad.
STARTUP_FAILURE = 3


def _upsample(text: str) -> UpsamplePolicy:
    if text == AUTO:
        return AUTO
    if text.isdigit() and int(text) <= MAX_UPSAMPLE:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected {AUTO} or 0 to {MAX_UPSAMPLE}, got {text!r}")


def _model_options(command: argparse.ArgumentParser, settings: Settings) -> None:
    """--model and --upsample, as every command that runs the model takes them."""
    command.add_argument("--model", type=Path, default=settings.model_path, help="checkpoint to use")
    command.add_argument(
        "--upsample",
        type=_upsample,
        default=settings.default_upsample,
        metavar="{auto,0,1,2}",
        help="detection policy: dlib upsampling 0-2, or auto, the highest within LANDMARKS_AUTO_SCAN_PIXELS "
        "(default: LANDMARKS_DEFAULT_UPSAMPLE, auto)",
    )


def _parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="face-landmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="print faces and 68 landmarks of each image as JSON")
    predict.add_argument("images", nargs="+", type=Path, help="image files")
    predict.add_argument("--draw", type=Path, help="also write annotated copies into this folder")
    _model_options(predict, settings)
    predict.add_argument("--max-faces", type=int, default=None, help="keep at most this many, largest first")
    predict.add_argument("--indent", type=int, default=None, help="pretty-print the JSON")
    video = commands.add_parser(
        "video",
        help="track the faces of a video file: the NDJSON lines of POST /landmarks/video, one per frame",
    )
    video.add_argument("video", type=Path, help="a video file (MP4, AVI, WebM, WMV, MOV...)")
    video.add_argument("--out", type=Path, help="write the lines to this file (default: standard output)")
    video.add_argument(
        "--render", type=Path, help="also write the video with points and track ids drawn (.mp4, .avi)"
    )
    _model_options(video, settings)
    video.add_argument("--stride", type=int, default=1, help="process every Nth frame")
    video.add_argument("--max-frames", type=int, default=None, help="process at most this many frames")
    video.add_argument(
        "--no-smoothing",
        dest="smoothing",
        action="store_false",
        help="the raw points, not filtered over time",
    )
    serve = commands.add_parser(
        "serve",
        help="load the checkpoint once (exit 3 if it is bad), then run uvicorn app.main:app; "
        "WEB_CONCURRENCY sets the workers and any other option is passed to uvicorn",
    )
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    return parser


def serve(args: argparse.Namespace, uvicorn_options: list[str]) -> int:
    """Check the checkpoint in this process, then replace it with uvicorn (same pid, so signals and the
    exit status are uvicorn's own). With several workers uvicorn's supervisor exits 0 when they all fail
    to load the model; checking first makes a bad checkpoint exit 3 whatever WEB_CONCURRENCY is."""
    from app.main import load_predictor  # the web layer, only for this command

    try:
        load_predictor(get_settings())
    except RuntimeError:  # already logged, with the reason
        return STARTUP_FAILURE
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", args.host, "--port", str(args.port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [*command, *uvicorn_options])
    return 0  # not reached: execv does not return


def predict(args: argparse.Namespace) -> int:
    settings = get_settings()
    cv2.setNumThreads(settings.torch_threads)
    pipeline = build_pipeline(settings, build_predictor(settings, args.model))
    if args.draw:
        args.draw.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in args.images:
        # One file at a time, as the service takes one photo: a batch of one through the same pipeline.
        try:
            photo = pipeline.run([Upload(path.read_bytes())], args.upsample, args.max_faces).single()
        except (OSError, InferenceError) as exc:
            failures += 1
            print(json.dumps({"file": str(path), "error": str(exc)}), file=sys.stderr)
            continue
        result = {"file": str(path), **photo.to_dict(), "model": pipeline.model_ref()}
        print(json.dumps(result, indent=args.indent))
        if args.draw:
            (args.draw / f"{path.stem}.jpg").write_bytes(photo.rendered("jpeg"))
    return 1 if failures else 0


class _Renderer:
    """Writes each processed frame, with its faces drawn, to a video file."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        if not self.writer.isOpened():
            raise OSError(f"cannot write a video to {path}")

    def __call__(self, frame: np.ndarray, faces: list[TrackedFace]) -> None:
        labels = [str(face.track_id) for face in faces]
        drawn = draw_faces(frame, [face.face for face in faces], pose=False, labels=labels)
        self.writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()


def video(args: argparse.Namespace) -> int:
    settings = get_settings()
    cv2.setNumThreads(settings.torch_threads)
    predictor = build_predictor(settings, args.model)
    options = build_tracker_options(settings, smoothing=args.smoothing, upsample=args.upsample)
    limits = VideoLimits(settings.max_pixels, settings.max_video_frames)
    renderer = None
    try:
        with VideoReader(args.video, limits) as reader:
            if args.render:
                info = reader.info
                renderer = _Renderer(args.render, info.fps / args.stride, info.width, info.height)
            out = args.out.open("w") if args.out else sys.stdout
            try:
                lines = video_lines(
                    predictor,
                    reader,
                    options,
                    stride=args.stride,
                    max_frames=args.max_frames,
                    on_frame=renderer,
                )
                failed = False
                for line in lines:
                    out.write(json.dumps(line, separators=(",", ":")) + "\n")
                    failed = "error" in line
            finally:
                if out is not sys.stdout:
                    out.close()
    except (OSError, InferenceError) as exc:
        print(json.dumps({"file": str(args.video), "error": str(exc)}), file=sys.stderr)
        return 1
    finally:
        if renderer is not None:
            renderer.close()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "serve":
        return serve(args, unknown)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "video":
        return video(args)
    return predict(args)


if __name__ == "__main__":
    raise SystemExit(main())
