"""The detector's upsampling policy: explicit levels and auto's scan budget."""

import numpy as np
import pytest

from app.inference import FaceDetector
from app.inference.imaging import decode_image
from tests.conftest import PHOTOS


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (400, 300, 2),  # 120,000 px: 1,920,000 scanned at 2
        (500, 375, 1),  # 187,500 px: 3,000,000 at 2 is over budget, 750,000 at 1 fits
        (800, 600, 1),  # 1,920,000 at 1
        (1024, 768, 0),  # 3,145,728 at 1 is over budget
        (1000, 1000, 0),
        (6000, 4000, 0),  # over budget even at 0: never below 0
        (1, 1, 2),
    ],
)
def test_auto_picks_the_highest_level_within_the_budget(width, height, expected):
    detector = FaceDetector(auto_scan_pixels=2_000_000)
    assert detector.resolve_upsample(width, height, "auto") == expected


def test_auto_budget_is_inclusive_and_counts_what_max_side_leaves():
    assert FaceDetector(auto_scan_pixels=3_000_000).resolve_upsample(500, 375, "auto") == 2
    assert FaceDetector(auto_scan_pixels=2_999_999).resolve_upsample(500, 375, "auto") == 1
    # detect_max_side shrinks 2000x1500 to 500x375 before detection: auto budgets that copy.
    reduced = FaceDetector(auto_scan_pixels=2_000_000, max_side=500)
    assert reduced.resolve_upsample(2000, 1500, "auto") == 1


@pytest.mark.parametrize("upsample", [0, 1, 2])
def test_explicit_levels_pass_through(upsample):
    assert FaceDetector().resolve_upsample(6000, 4000, upsample) == upsample


@pytest.mark.parametrize("upsample", [-1, 3, "Auto", 1.0])
def test_invalid_policies_raise(upsample):
    with pytest.raises(ValueError, match="upsample"):
        FaceDetector().resolve_upsample(100, 100, upsample)


def test_detect_with_auto_runs_the_resolved_level():
    image = decode_image((PHOTOS / "2008_007676.jpg").read_bytes(), 10**8)
    detector = FaceDetector()
    auto = detector.detect(image, "auto")
    assert detector.resolve_upsample(image.shape[1], image.shape[0], "auto") == 1
    assert auto == detector.detect(image, 1)
    assert len(auto) > len(detector.detect(image, 0)) == 0
    assert isinstance(auto[0].box.left, int) and not np.isnan(auto[0].score)
