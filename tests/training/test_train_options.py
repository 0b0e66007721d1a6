"""train refuses inconsistent options before it prepares or trains anything."""

from pathlib import Path

import pytest

from tests.training.conftest import train_args
from training.cli import main


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stage", "landmarks"], "needs --first-stage"),
        (["--heads", "300w", "aflw2000"], "2 conventions for 1 --data folders"),
        (["--first-stages", "1"], "go with --stage landmarks"),
    ],
)
def test_inconsistent_stage_options_are_refused(small_aflw: Path, tmp_path: Path, extra, message) -> None:
    with pytest.raises(ValueError, match=message):
        main([*train_args([small_aflw], tmp_path, "bad", epochs=1), *extra])
    assert not (tmp_path / "cache").exists(), "refused before preparing the data"
