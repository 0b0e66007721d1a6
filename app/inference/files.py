"""Writing a file so that readers never see half of it and concurrent writers never collide."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary file of this writer's own beside ``path``, then rename it over
    ``path``: a reader sees the old file or the new one, and two processes writing the same file at once
    (two trainings building one cache) each replace it whole. The temporary name ends in ``.tmp`` plus
    ``path``'s suffix (``np.savez`` appends ``.npz`` to any other); nothing is left behind on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp" + path.suffix, dir=path.parent)
    os.fchmod(handle, 0o644)  # as an ordinary file, not mkstemp's owner-only mode
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
