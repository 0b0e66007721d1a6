"""The training crops: a torch Dataset over cached faces (``training.cache``), the split of those faces
into training and validation items, and the crops' per-channel statistics."""

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from app.inference.geometry import Frame, crop_frame, landmark_frame
from training.augment import flip_face, jitter_frame, occlude, photometric
from training.cache import FaceCache, frame_in_patch
from training.config import AugmentConfig
from training.split import is_validation


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
