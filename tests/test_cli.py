"""face-landmarks predict: the detection policy on the command line."""

import json

import pytest

from app.cli import main
from tests.conftest import PHOTOS, SHIPPED_MODEL


def run(capsys, *args: str) -> list[dict]:
    assert main(["predict", "--model", str(SHIPPED_MODEL), *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_default_policy_is_auto_and_reported(capsys):
    small, large = run(capsys, str(PHOTOS / "2008_007676.jpg"), str(PHOTOS / "bald_guys.jpg"))
    assert small["detection"] == {"upsample": 1} and len(small["faces"]) >= 6
    assert large["detection"] == {"upsample": 0} and len(large["faces"]) >= 20


def test_explicit_upsample_is_honoured(capsys):
    (result,) = run(capsys, "--upsample", "0", str(PHOTOS / "2008_007676.jpg"))
    assert result["detection"] == {"upsample": 0} and result["faces"] == []


@pytest.mark.parametrize("value", ["3", "-1", "AUTO", "one"])
def test_bad_upsample_is_a_usage_error(capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--upsample", value, str(PHOTOS / "dogs.jpg")])
    assert exit_info.value.code == 2
    assert "--upsample" in capsys.readouterr().err
