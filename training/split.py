"""The training/validation split: by image, from a salted hash of the file stem, so that it is stable
across machines, runs and folder contents, and every command (train, evaluate --val-data, calibrate,
pose, onet-init, subset, mean-face) holds out the same images.

``SPLIT_SALT`` and ``VAL_FRACTION`` are the defaults of every command's ``--split-salt`` /
``--val-fraction``; a checkpoint records the values it was trained with (``checkpoint_split``).
"""

import hashlib
import random
from pathlib import Path
from typing import Any, Literal

SPLIT_SALT = "face-landmarks-split-v1"
VAL_FRACTION = 0.15
SPLIT_RULE = (
    "an image is in the validation split when int(sha1(salt + stem).hexdigest()[:15], 16) / 16**15 "
    "< val_fraction (stem = file name without suffix); the rest is training"
)
DEFAULT_SPLIT = (VAL_FRACTION, SPLIT_SALT)  # (val_fraction, salt), the arguments of is_validation
# Which images of a folder a command reads: every one, or one side of the split.
Part = Literal["all", "training", "validation"]


def is_validation(stem: str, val_fraction: float, salt: str) -> bool:
    """Stable, reproducible split by image: a hash of the file stem (see ``SPLIT_RULE``)."""
    digest = hashlib.sha1((salt + stem).encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16**15 < val_fraction


def in_part(stem: str, part: Part, split: tuple[float, str]) -> bool:
    """Whether the image ``stem`` is in ``part`` of ``split`` = (val_fraction, salt)."""
    return part == "all" or is_validation(stem, *split) == (part == "validation")


def checkpoint_split(metadata: dict[str, Any]) -> tuple[float, str]:
    """(val_fraction, salt) of the split a checkpoint was trained with (the defaults when its metadata
    does not say): the arguments of ``is_validation`` for that checkpoint's faces."""
    split = metadata.get("split", {})
    return float(split.get("val_fraction", VAL_FRACTION)), str(split.get("salt", SPLIT_SALT))


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
