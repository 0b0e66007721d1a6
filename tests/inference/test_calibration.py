"""The error estimate's calibration: the fit, and that the service serves the calibrated estimate."""

from pathlib import Path

import numpy as np
import pytest

from app.inference import LandmarkPredictor
from app.inference.calibration import ErrorCalibration
from app.inference.checkpoint import load_checkpoint
from app.inference.imaging import decode_image
from tests.conftest import PHOTOS


def test_the_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    raw = np.exp(rng.uniform(-5, -2, 200))
    scores = rng.uniform(0, 3, 200)
    sides = rng.uniform(40, 400, 200)
    known = ErrorCalibration(log_estimate=0.8, detector_score=-0.1, log_box_side=-0.2, bias=0.5)
    truth = known.apply(raw, scores, sides)
    fitted = ErrorCalibration.fit(raw, scores, sides, truth)
    np.testing.assert_allclose(fitted.coefficients(), known.coefficients(), atol=1e-9)


def test_a_checkpoint_without_calibration_serves_the_raw_estimate() -> None:
    assert ErrorCalibration.from_metadata({}) is None
    assert ErrorCalibration.from_metadata({"error_calibration": None}) is None


@pytest.fixture(scope="module")
def calibrated(model_path: Path) -> LandmarkPredictor:
    model = load_checkpoint(model_path)
    if ErrorCalibration.from_metadata(model.metadata) is None:
        pytest.fail(f"{model_path} carries no error_calibration (face-landmarks-train calibrate)")
    return LandmarkPredictor(model)


def test_the_service_path_serves_the_calibrated_estimate(calibrated: LandmarkPredictor) -> None:
    image = decode_image((PHOTOS / "bald_guys.jpg").read_bytes(), 10**8)
    faces = calibrated.predict(image)
    assert len(faces) >= 10
    raw = LandmarkPredictor(calibrated.model, calibrate_error=False).faces(
        image, calibrated.detect(image, 0)[: len(faces)]
    )
    assert calibrated.calibration is not None
    expected = calibrated.calibration.apply(
        np.array([f.error_estimate for f in raw]),
        [f.score for f in faces],
        np.array([np.sqrt(f.box.width * f.box.height) for f in faces]),
    )
    np.testing.assert_allclose([f.error_estimate for f in faces], expected, rtol=1e-9)
    assert not np.allclose(expected, [f.error_estimate for f in raw])
    # Lower detector scores and smaller boxes mean larger expected errors (the fitted signs).
    assert calibrated.calibration.detector_score < 0 and calibrated.calibration.log_box_side < 0
