"""The iBUG ``.pts`` format: a ``key: value`` header (``version``, ``n_points``), then ``{``, one
``x y`` line per point in original-image pixels, ``}``."""

from pathlib import Path

import numpy as np


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
