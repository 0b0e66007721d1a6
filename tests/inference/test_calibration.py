"""The error estimate's calibration: the fit, and that the service serves the calibrated estimate; the
hard-face flip that the same command's threshold drives."""

from pathlib import Path

import numpy as np
import pytest

from app.inference import LandmarkPredictor
from app.inference.calibration import ErrorCalibration, hard_face_flip
from app.inference.checkpoint import load_checkpoint
from app.inference.imaging import decode_image
from tests.conftest import DATA, PHOTOS


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
    (raw,) = LandmarkPredictor(calibrated.model, calibrate_error=False).faces(
        [image], [calibrated.detect(image, 0)[: len(faces)]]
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


def test_hard_faces_and_only_they_are_averaged_with_their_mirror_image(calibrated: LandmarkPredictor) -> None:
    model = calibrated.model
    assert calibrated.hard_face_flip == hard_face_flip(model.metadata) is not None
    # A group photo of frontal faces and turned faces of AFLW2000-3D: both kinds of face.
    paths = [PHOTOS / "bald_guys.jpg", *sorted((DATA / "aflw2000" / "train").glob("*.jpg"))[:30]]
    images = [decode_image(path.read_bytes(), 10**8) for path in paths]
    boxes = [[d.box for d in calibrated.detect(image, 0)] for image in images]
    plain = LandmarkPredictor(model, flip_hard_faces=False, calibrate_error=False)
    flipped = LandmarkPredictor(model, flip_test_time=True, calibrate_error=False)
    served = LandmarkPredictor(model, calibrate_error=False)
    results = [[m.estimate(images, boxes)] for m in (plain, flipped, served)]
    (plain_out,), (flipped_out,), (served_out,) = results
    hard_faces = 0
    for (p0, e0), (p1, e1), (ps, es) in zip(plain_out, flipped_out, served_out, strict=True):
        assert e0 is not None and e1 is not None and es is not None
        hard = e0 > calibrated.hard_face_flip
        hard_faces += int(hard.sum())
        # A hard face gets exactly the flip-averaged points; the others the plain pass's, untouched.
        np.testing.assert_allclose(ps[hard], p1[hard], atol=1e-4)
        np.testing.assert_array_equal(ps[~hard], p0[~hard])
        np.testing.assert_allclose(es[hard], e1[hard], rtol=1e-4)
        np.testing.assert_array_equal(es[~hard], e0[~hard])
    faces = sum(len(found) for found in boxes)
    assert 0 < hard_faces < faces / 2, (hard_faces, faces)
    assert not any(e0 > calibrated.hard_face_flip for e0 in plain_out[0][1]), "frontal group photo"
    assert hard_face_flip({}) is None and hard_face_flip({"hard_face_flip": None}) is None
