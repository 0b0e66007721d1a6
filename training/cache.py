"""The cache of detected faces: per folder, the labelled faces the service's detector finds, each with a
square patch around its box (a margin for augmentation), reduced so that the box is about
``cache_box_size`` pixels, plus the box and the points in original-image pixels. Faces the detector
misses are counted and listed in the cache's report, never dropped silently.

A training crop (``training.dataset``) is then one ``crop_frame`` of the patch, with the frame mapped
from image to patch coordinates: with no augmentation it is (nearly) the crop the predictor makes.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.detector import Box, FaceDetector
from app.inference.files import write_atomically
from app.inference.geometry import Frame, crop_frame
from app.inference.landmarks import NUM_POINTS
from training.config import PrepareConfig
from training.folders import FolderScan, scan_folder
from training.licences import licence_note

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2


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
        image = item.decode()
        detections = detector.detect(image, config.upsample)
        match = item.match(detections)
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
