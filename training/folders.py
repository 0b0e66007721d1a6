"""Labelled folders: every image with an iBUG ``.pts`` of 68 points beside it, and the one iterator over
the labelled images of a split that evaluate, calibrate, pose, onet-init and mean-face read.

A folder is flat: images with a ``.pts`` file of the same stem beside them (300-W, Menpo and the sets
under ``../shared/data`` all look like this). An image is decoded as the service decodes an upload; its
face is the detection whose box holds the centre of the labelled points (the largest if several).
"""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.inference.detector import Detection
from app.inference.imaging import decode_image
from app.inference.landmarks import NUM_POINTS
from training.pts import PtsError, read_pts
from training.split import DEFAULT_SPLIT, Part, in_part

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
# Training reads its own files: a far higher pixel limit than the service's upload limit.
MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class LabelledImage:
    image: Path
    points: np.ndarray  # (68, 2) original-image pixels

    @property
    def stem(self) -> str:
        return self.image.stem

    def decode(self) -> np.ndarray:
        """The image as the service decodes an upload (upright, BGR or gray)."""
        return decode_image(self.image.read_bytes(), MAX_PIXELS)

    def match(self, detections: Sequence[Detection]) -> Detection | None:
        """The detection that is this labelled face (see ``match_detection``)."""
        return match_detection(detections, self.points)


@dataclass
class FolderScan:
    folder: Path
    images: list[LabelledImage] = field(default_factory=list)
    skipped_points: list[str] = field(default_factory=list)  # stems whose .pts has other than 68 points
    unreadable: list[str] = field(default_factory=list)  # stems whose .pts could not be read
    unlabelled: int = 0  # images without a .pts

    def labelled(
        self, part: Part = "all", split: tuple[float, str] = DEFAULT_SPLIT
    ) -> Iterator[LabelledImage]:
        """The labelled images in ``part`` of ``split`` = (val_fraction, salt), sorted by file name."""
        return (item for item in self.images if in_part(item.stem, part, split))


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


def labelled_images(
    folder: str | Path, part: Part = "all", split: tuple[float, str] = DEFAULT_SPLIT
) -> Iterator[LabelledImage]:
    """The 68-point labelled images of ``folder`` in ``part`` of ``split`` = (val_fraction, salt)."""
    return scan_folder(folder).labelled(part, split)


def points_centre(points: np.ndarray) -> tuple[float, float]:
    """Centre of the bounding box of the labelled points."""
    low, high = points.min(axis=0), points.max(axis=0)
    return float(low[0] + high[0]) / 2.0, float(low[1] + high[1]) / 2.0


def match_detection(detections: Sequence[Detection], points: np.ndarray) -> Detection | None:
    """The detection whose box holds the centre of ``points``; the largest if several; None if none."""
    cx, cy = points_centre(points)
    holding = [d for d in detections if d.box.contains(cx, cy)]
    return max(holding, key=lambda d: d.box.area) if holding else None
