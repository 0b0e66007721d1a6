"""Matplotlib figures from arrays (Agg backend: no display needed)."""

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.metrics import THRESHOLD, auc, ced, roc_auc, spearman  # noqa: E402

STYLES = {"ours": "-", "ours+flip": "-", "dlib": "--"}


def plot_ced(
    errors: dict[str, np.ndarray], path: str | Path, *, title: str, threshold: float = THRESHOLD
) -> Path:
    """CED curves (share of faces with NME (box) <= x, x from 0 to ``threshold``), AUCs in the legend."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.linspace(0.0, threshold, 401)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for method, values in errors.items():
        values = np.asarray(values)
        failures = 100 * (values > threshold).mean()
        label = f"{method}: AUC@{threshold:g} = {auc(values, threshold):.3f}, FR = {failures:.1f}%"
        ax.plot(x, ced(values, x), STYLES.get(method, "-"), label=label, linewidth=1.8)
    ax.set_xlim(0.0, threshold)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("NME (box): mean error / sqrt(W x H) of the dlib box")
    ax.set_ylabel("share of faces")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_error_estimate(
    estimate: np.ndarray, truth: np.ndarray, path: str | Path, *, title: str, threshold: float = THRESHOLD
) -> Path:
    """Per-face error estimate against the true NME (box), log-log, with the failure threshold."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    estimate, truth = np.asarray(estimate), np.asarray(truth)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    failed = truth > threshold
    ax.scatter(truth[~failed], estimate[~failed], s=9, alpha=0.6, label="NME <= threshold")
    ax.scatter(truth[failed], estimate[failed], s=12, alpha=0.8, color="tab:red", label="failure")
    low = max(1e-3, float(min(truth.min(), estimate.min())) * 0.8)
    high = float(max(truth.max(), estimate.max())) * 1.2
    ax.plot([low, high], [low, high], "k:", linewidth=1, label="estimate = truth")
    ax.axvline(threshold, color="tab:red", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true NME (box)")
    ax.set_ylabel("error estimate")
    ax.set_title(
        f"{title}\nSpearman {spearman(estimate, truth):.2f}, "
        f"ROC AUC (failures) {roc_auc(estimate, failed):.2f}",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_learning_curve(
    faces: np.ndarray,
    errors: np.ndarray,
    fit: tuple[float, float],
    target: float,
    path: str | Path,
    label: str,
) -> Path:
    """Errors against training faces (log-log), the fitted power law extended to the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    a, b = fit
    high = faces.max() * 4
    if target > 0 and b > 0:
        high = max(high, min((a / target) ** (1.0 / b) * 1.3, faces.max() * 100))
    x = np.geomspace(faces.min() * 0.8, high, 200)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ax.plot(faces, errors, "o", color="tab:blue", label="runs")
    ax.plot(x, a * x**-b, "-", color="tab:blue", alpha=0.6, label=f"fit: {a:.3g} x faces^-{b:.3f}")
    if target > 0:
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("training faces")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
