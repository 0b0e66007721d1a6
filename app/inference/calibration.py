"""Calibration of the error estimate with what the network cannot see.

The error head reads the crop only. The detector knows two more things about a face that go with the
landmarks' error: how sure it is (its score: low-scoring boxes are the harder faces) and how many pixels
the face has (small faces lose detail in the box; NME is relative to the box, so their error is larger
in those units). The served estimate is

    log(error_estimate) = log_estimate * log(raw) + detector_score * score
                          + log_box_side * log(sqrt(W * H)) + bias

with ``raw`` the error head's estimate in NME (box). The four coefficients are fitted by least squares
on the log NME of the *training* split's faces (``face-landmarks-train calibrate``), never on the
validation faces the estimate is judged on, and stored in the checkpoint's metadata
(``error_calibration``). A checkpoint without them serves the raw estimate.

The same command stores, as ``hard_face_flip``, the raw estimate above which the predictor averages a
face's points with those of its mirror image (a quantile of the training faces' raw estimates, 0.9 by
default): the second pass goes to the faces the network is least sure of, at a tenth of the cost of
flipping every face.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FEATURES = ("log_estimate", "detector_score", "log_box_side", "bias")


def features(raw: np.ndarray, scores: np.ndarray, box_sides: np.ndarray) -> np.ndarray:
    """(N, 4) design matrix, one column per name of ``FEATURES``."""
    raw, scores, sides = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (raw, scores, box_sides))
    return np.stack([np.log(raw), scores, np.log(sides), np.ones_like(raw)], axis=1)


@dataclass(frozen=True)
class ErrorCalibration:
    log_estimate: float
    detector_score: float
    log_box_side: float
    bias: float

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "ErrorCalibration | None":
        data = metadata.get("error_calibration")
        if not isinstance(data, dict):
            return None
        return cls(**{name: float(data[name]) for name in FEATURES})

    @classmethod
    def fit(
        cls, raw: np.ndarray, scores: np.ndarray, box_sides: np.ndarray, true_nme: np.ndarray
    ) -> "ErrorCalibration":
        """Least squares of log(true NME) on ``features``."""
        target = np.log(np.maximum(np.asarray(true_nme, dtype=np.float64), 1e-6))
        coefficients, *_ = np.linalg.lstsq(features(raw, scores, box_sides), target, rcond=None)
        return cls(*(float(c) for c in coefficients))

    def coefficients(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in FEATURES])

    def apply(
        self, raw: np.ndarray, scores: Sequence[float] | np.ndarray, box_sides: np.ndarray
    ) -> np.ndarray:
        """The calibrated estimate (NME box) of each face."""
        return np.exp(features(raw, np.asarray(scores), box_sides) @ self.coefficients())

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def hard_face_flip(metadata: dict[str, Any]) -> float | None:
    """The checkpoint's ``hard_face_flip`` threshold: the raw estimate (NME box) above which a face is
    averaged with its mirror image (when ``flip_hard_faces`` is on), or None."""
    data = metadata.get("hard_face_flip")
    if not isinstance(data, dict) or data.get("estimate_above") is None:
        return None
    return float(data["estimate_above"])
