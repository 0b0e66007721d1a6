"""Facts about the iBUG 300-W 68-point markup that several layers need."""

import numpy as np

NUM_POINTS = 68

# Index permutation that maps the points of a face to those of its mirror image.
FLIP_PERMUTATION: np.ndarray = np.array(
    list(range(16, -1, -1))  # jaw 0-16
    + list(range(26, 16, -1))  # brows 17-21 <-> 26-22
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose base
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48]  # outer upper lip
    + [59, 58, 57, 56, 55]  # outer lower lip
    + [64, 63, 62, 61, 60]  # inner upper lip
    + [67, 66, 65],  # inner lower lip
    dtype=np.int64,
)

# Outer eye corners, the usual inter-ocular normalisation of 300-W.
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45

# Polylines for drawing: (first, last, closed).
CONTOURS: tuple[tuple[int, int, bool], ...] = (
    (0, 16, False),
    (17, 21, False),
    (22, 26, False),
    (27, 30, False),
    (31, 35, False),
    (36, 41, True),
    (42, 47, True),
    (48, 59, True),
    (60, 67, True),
)
