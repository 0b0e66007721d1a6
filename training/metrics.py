"""The field's landmark metrics in numpy: NME (box, inter-ocular, inner points), CED, AUC, failure rate,
and the rank statistics that judge an error estimate (Spearman correlation, ROC AUC).

NME (box) = mean point-to-point error in original pixels / sqrt(W x H) of the dlib box; inter-ocular
NME = the same error / distance between the outer eye corners (points 36 and 45) of the ground truth.
CED up to a threshold (0.08), AUC@0.08 = area under the CED from 0 to 0.08 divided by 0.08, failure
rate = share of faces with NME > 0.08.
"""

import numpy as np

from app.inference import Box
from app.inference.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER

THRESHOLD = 0.08
# The 51 inner points (brows, nose, eyes, mouth), which the 300-W and AFLW2000-3D conventions place
# alike: the inner NME, and what the served head also learns from other conventions' faces (share_inner).
INNER = slice(17, 68)


def point_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(..., 68) point-to-point distances."""
    return np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64), axis=-1)


def nme_box(pred: np.ndarray, truth: np.ndarray, box: Box) -> float:
    """Mean point-to-point error divided by sqrt(width x height) of the box."""
    return float(point_errors(pred, truth).mean() / np.sqrt(box.width * box.height))


def nme_inner(pred: np.ndarray, truth: np.ndarray, box: Box) -> float:
    """NME (box) over the 51 inner points only."""
    return nme_box(np.asarray(pred)[INNER], np.asarray(truth)[INNER], box)


def nme_interocular(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point-to-point error divided by the ground-truth outer-eye-corner distance (36, 45)."""
    truth = np.asarray(truth, dtype=np.float64)
    return float(
        point_errors(pred, truth).mean() / np.linalg.norm(truth[LEFT_EYE_OUTER] - truth[RIGHT_EYE_OUTER])
    )


def ced(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: share of faces with error <= each threshold."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    if errors.size == 0:
        return np.zeros(len(thresholds))
    return np.searchsorted(errors, thresholds, side="right") / errors.size


def auc(errors: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold`` (0..1), computed exactly:
    a face with error e contributes max(0, threshold - e) to the area."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return float("nan")
    return float(np.clip(threshold - errors, 0.0, None).mean() / threshold)


def failure_rate(errors: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Share of faces with error > ``threshold``."""
    errors = np.asarray(errors, dtype=np.float64)
    return float((errors > threshold).mean()) if errors.size else float("nan")


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    values = np.asarray(values, dtype=np.float64)
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first + (counts + 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's of the tie-averaged ranks)."""
    if len(a) < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` flagging ``positive`` (Mann-Whitney U, ties halved)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = ranks(scores)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def summarise(
    nme: np.ndarray,
    nme_io: np.ndarray,
    threshold: float = THRESHOLD,
    nme_in: np.ndarray | None = None,
    estimate: np.ndarray | None = None,
) -> dict[str, float]:
    """The figures of one method on one set; with ``estimate`` (per-face error estimates) also how
    well they rank the true NME (Spearman) and flag failures (ROC AUC)."""
    nme, nme_io = np.asarray(nme), np.asarray(nme_io)
    empty = nme.size == 0
    extra: dict[str, float] = {}
    if nme_in is not None:
        extra["nme_inner_mean"] = float("nan") if empty else float(np.mean(nme_in))
    if estimate is not None and len(estimate) == nme.size:
        extra["estimate_spearman"] = spearman(estimate, nme)
        extra["estimate_roc_auc"] = roc_auc(estimate, nme > threshold)
    return {
        **extra,
        "faces": int(nme.size),
        "auc": auc(nme, threshold),
        "failure_rate": failure_rate(nme, threshold),
        "nme_box_mean": float("nan") if empty else float(nme.mean()),
        "nme_box_median": float("nan") if empty else float(np.median(nme)),
        "nme_io_mean": float("nan") if empty else float(nme_io.mean()),
        "nme_io_median": float("nan") if empty else float(np.median(nme_io)),
    }
