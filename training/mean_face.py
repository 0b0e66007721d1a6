"""Derive the 68-point 3D mean face that ``app.inference.pose`` solves head pose against.

Rigid structure from motion (Tomasi & Kanade 1992, affine factorisation with the metric upgrade) over
the 2D labels of many faces seen in different poses: the centred points of every face, stacked, form a
matrix of rank 3 (an affine camera times one 3D shape), whose best rank-3 factorisation gives the shape
up to an affine map; the metric constraints (each face's camera rows orthogonal and of equal length)
turn it into a Euclidean shape. The result is then put into the head's own axes and made mirror
symmetric. Run on the training split of AFLW2000-3D (its labels follow the 3D jaw convention, so the
jaw is a rigid part of the shape), ``face-landmarks-train mean-face FOLDER`` prints the table that
``app/inference/pose.py`` holds.
"""

import sys
from pathlib import Path

import numpy as np

from app.inference.landmarks import FLIP_PERMUTATION, LEFT_EYE_OUTER, NUM_POINTS, RIGHT_EYE_OUTER
from training.folders import labelled_images
from training.split import DEFAULT_SPLIT, Part

NOSE_TIP, CHIN = 30, 8
BROWS, MOUTH = slice(17, 27), slice(48, 68)


def factorise(shapes: np.ndarray) -> np.ndarray:
    """(F, P, 2) image points of one rigid object -> (P, 3) Euclidean shape, up to rotation, scale and a
    mirror image."""
    centred = shapes - shapes.mean(axis=1, keepdims=True)
    w = centred.transpose(0, 2, 1).reshape(-1, shapes.shape[1])  # (2F, P): x row, y row per face
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    motion = u[:, :3] * np.sqrt(s[:3])
    shape = np.sqrt(s[:3])[:, None] * vt[:3]
    # Metric upgrade: find L = Q Q^T with a L a = b L b and a L b = 0 for each face's rows a, b.
    a, b = motion[0::2], motion[1::2]
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]

    def coefficients(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack(
            [x[:, i] * y[:, j] + (x[:, j] * y[:, i] if i != j else 0.0) for i, j in pairs], axis=1
        )

    rows = np.vstack([coefficients(a, a) - coefficients(b, b), coefficients(a, b)])
    scale_row = (coefficients(a, a) + coefficients(b, b)).sum(axis=0, keepdims=True)
    lhs = np.vstack([rows, scale_row])
    rhs = np.concatenate([np.zeros(len(rows)), [2.0 * len(a)]])
    l6 = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    big_l = np.array([[l6[0], l6[1], l6[2]], [l6[1], l6[3], l6[4]], [l6[2], l6[4], l6[5]]])
    q = np.linalg.cholesky(big_l)
    return (np.linalg.inv(q) @ shape).T


def to_head_axes(shape: np.ndarray) -> np.ndarray:
    """The shape in the head's axes: x from the face's right to its left side (the viewer's left to
    right in a frontal photo), y downwards, z away from the viewer (the nose tip has the smallest z);
    origin at the centroid; unit = the outer-eye-corner distance; mirror symmetric."""
    shape = shape - shape.mean(axis=0)
    pairs = np.arange(NUM_POINTS) != FLIP_PERMUTATION
    across = (shape[FLIP_PERMUTATION] - shape)[pairs]
    # Orient each pair's difference the same way (viewer's left to right) before averaging.
    signs = np.sign(across @ (shape[RIGHT_EYE_OUTER] - shape[LEFT_EYE_OUTER]))
    x = (across * signs[:, None]).mean(axis=0)
    x /= np.linalg.norm(x)
    down = shape[CHIN] - shape[BROWS].mean(axis=0)
    y = down - (down @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    head = shape @ np.stack([x, y, z], axis=1)
    if head[NOSE_TIP, 2] > head[:, 2].mean():  # factorisation leaves depth's sign open
        head[:, 2] *= -1.0
    mirrored = head[FLIP_PERMUTATION] * np.array([-1.0, 1.0, 1.0])
    head = (head + mirrored) / 2.0
    head -= head.mean(axis=0)
    return head / np.linalg.norm(head[RIGHT_EYE_OUTER] - head[LEFT_EYE_OUTER])


def derive_mean_face(
    folder: str | Path, part: Part = "training", split: tuple[float, str] = DEFAULT_SPLIT
) -> np.ndarray:
    """(68, 3) mean face from the labels of ``part`` of ``folder`` (by default its training split)."""
    shapes = [item.points for item in labelled_images(folder, part, split)]
    if len(shapes) < 10:
        raise ValueError(f"{folder}: {len(shapes)} labelled faces; a mean face needs many poses")
    return to_head_axes(factorise(np.stack(shapes)))


def python_table(face: np.ndarray) -> str:
    """``face`` as the rows of the table in ``app/inference/pose.py``."""
    return "\n".join(f"    [{x: .4f}, {y: .4f}, {z: .4f}],  # {i}" for i, (x, y, z) in enumerate(face))


if __name__ == "__main__":  # the command's older spelling: python -m training.mean_face FOLDER
    from training.cli import main

    sys.exit(main(["mean-face", *sys.argv[1:]]))
