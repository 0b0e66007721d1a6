"""The training command line: one table of commands, every option's help beside its field, the options
parse into the commands' configs, and the table runs each command (mean-face included)."""

import dataclasses
import typing
from pathlib import Path

import numpy as np
import pytest

from training.cli import COMMANDS, build_parser, main
from training.config import from_arguments
from training.mean_face import derive_mean_face


def fields_of(cls: type) -> list[tuple[str, dataclasses.Field]]:
    """Every option field of ``cls``, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found += fields_of(hints[f.name])
        else:
            found.append((f"{cls.__name__}.{f.name}", f))
    return found


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_option_has_its_help_beside_its_field(command) -> None:
    missing = [name for name, f in fields_of(command.config) if not f.metadata.get("help", "").strip()]
    assert not missing, missing


def test_help_lists_every_command_with_each_options_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(c.name in listed for c in COMMANDS)
    with pytest.raises(SystemExit):
        main(["onet-init", "--help"])
    # The help that source comments once lost: onet-init's --first-stage and the split salts.
    assert "its first stage goes in the file too" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["subset", "--help"])
    assert "salt of the stem hash that assigns the split" in capsys.readouterr().out


def parse(argv: list[str]):
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    return from_arguments(command.config, args)


def test_options_keep_their_spellings_and_types() -> None:
    config = parse(
        [
            "train",
            "--data",
            "a",
            "b",
            "--val-fraction",
            "0.2",
            "--split-salt",
            "s",
            "--channels",
            "8",
            "16",
            "16",
            "32",
        ]
        + ["--no-progress-bar", "--loss", "l2", "--flip", "0.25", "--cache", "c", "--upsample", "1"]
    )
    assert config.data == ["a", "b"] and config.val_fraction == 0.2 and config.split_salt == "s"
    assert config.model.channels == (8, 16, 16, 32) and config.progress_bar is False and config.loss == "l2"
    assert config.augment.flip == 0.25 and config.prepare.cache == "c" and config.prepare.upsample == 1
    assert parse(["train"]).epochs == 200  # defaults stay when not given
    prepared = parse(["prepare", "x", "y", "--rebuild"])
    assert prepared.folders == ["x", "y"] and prepared.prepare.rebuild is True
    with pytest.raises(SystemExit):
        parse(["train", "--loss", "l1"])  # not one of the choices


def test_mean_face_is_a_command_of_the_table(small_aflw: Path, capsys) -> None:
    assert main(["mean-face", str(small_aflw)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("    [")]
    printed = np.array([[float(v) for v in row.split("[")[1].split("]")[0].split(",")] for row in rows])
    np.testing.assert_allclose(printed, derive_mean_face(small_aflw), atol=6e-5)
    assert printed.shape == (68, 3)
