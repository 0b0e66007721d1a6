"""Matplotlib figures from arrays (Agg backend: no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.evaluate import THRESHOLD, auc, ced  # noqa: E402

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
