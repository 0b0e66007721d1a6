"""Aligned face chips: a similarity transform that puts a face's points onto a template, and the chip.

Two templates, chosen by name:

- ``arcface``: the five-point 112x112 template of ArcFace / InsightFace (``arcface_dst`` in InsightFace's
  ``face_align.py``): eye centres, nose tip, mouth corners, scaled by ``size / 112``. The five points
  are taken from the 68 as the template's labels place them (``five_points``): the eye centres are the
  means of points 36-41 and 42-47; the nose tip is a quarter of the way from point 30 to 29 and each
  mouth corner midway between the outer and inner lip corners (48 and 60, 54 and 64). The template's
  points come from another labelling (RetinaFace / MTCNN): on the near-frontal faces (|yaw|, |pitch|
  <= 15) of the 300-W training labels, these points lie a mean 2.48 px from the fitted template at 112,
  against 2.73 px for the bare points 30, 48 and 54 (whose nose sits 1.4 px and mouth corners 1.7 px
  off vertically on average; now 0.0 and 1.0). The transform's rotation puts the eye line at the
  template's angle (0.32 degrees off level), its scale and shift are the least-squares fit of the five
  points: faces are not all of the template's proportions, so single points stay off by a few pixels.
- ``dlib``: dlib's ``get_face_chip`` with its default padding of 0.25 (what dlib's face-recognition
  network expects at size 150): dlib's own ``get_face_chip_details`` fits the inner 51 points (17-67) to
  its centred mean face, padded by 0.25 of the face on each side. That fit can leave the eye line up to
  about 1.5 degrees off level, so the chip is then turned about its centre until the eyes are level
  (``dlib_chip_transform`` alone is dlib's chip exactly).

A chip is ``cv2.warpAffine`` of the photo with that transform (bilinear; a face much larger than the chip
is first reduced with area averaging, so the chip does not alias). Where the chip reaches past the
photo's border it is filled as ``border`` says: ``black`` (zeros, as dlib and InsightFace do),
``replicate`` (the nearest edge pixel) or ``reflect`` (the photo mirrored at its edge, edge pixel not
repeated).
"""

from dataclasses import dataclass
from typing import Literal

import cv2
import dlib
import numpy as np

Template = Literal["arcface", "dlib"]
Border = Literal["black", "replicate", "reflect"]
TEMPLATES: tuple[str, ...] = ("arcface", "dlib")
BORDERS: dict[str, int] = {
    "black": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
}
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 32, 512, 112

# InsightFace's ArcFace template for 112x112 chips: (x, y) of the left eye, right eye (as seen), nose
# tip, left and right mouth corners.
ARCFACE_112: np.ndarray = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
DLIB_PADDING = 0.25


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) points of the ArcFace template's kind: eye centres (viewer's left first), nose tip, mouth
    corners (viewer's left first), placed as that template's labelling places them (module docstring)."""
    p = np.asarray(landmarks, dtype=np.float64)
    nose = 0.75 * p[30] + 0.25 * p[29]
    left_mouth, right_mouth = (p[48] + p[60]) / 2.0, (p[54] + p[64]) / 2.0
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), nose, left_mouth, right_mouth])


def eye_level_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 similarity mapping the five ``source`` points onto the five ``target`` points: the rotation
    turns the source's eye line (points 0 -> 1) onto the target's, so eyes come out exactly as level as
    the template's; scale and translation are then the least-squares fit of all five points."""
    src, dst = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    src_eye, dst_eye = src[1] - src[0], dst[1] - dst[0]
    angle = np.arctan2(dst_eye[1], dst_eye[0]) - np.arctan2(src_eye[1], src_eye[0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src_c, dst_c = src - src.mean(axis=0), dst - dst.mean(axis=0)
    scale = float(((src_c @ rotation.T) * dst_c).sum() / (src_c**2).sum())
    linear = scale * rotation
    return np.hstack([linear, (dst.mean(axis=0) - linear @ src.mean(axis=0))[:, None]])


def dlib_chip_transform(landmarks: np.ndarray, size: int, padding: float = DLIB_PADDING) -> np.ndarray:
    """2x3 image -> chip transform of dlib's ``get_face_chip(image, shape, size, padding)``."""
    p = np.asarray(landmarks, dtype=np.float64)
    left, top = np.floor(p.min(axis=0)).astype(int)
    right, bottom = np.ceil(p.max(axis=0)).astype(int)
    parts = [dlib.point(round(x), round(y)) for x, y in p]
    shape = dlib.full_object_detection(dlib.rectangle(left, top, right, bottom), parts)
    details = dlib.get_face_chip_details(shape, size, padding)
    # dlib maps the chip's corners (0, 0), (cols-1, 0), (0, rows-1) to the corners of details.rect turned
    # counter-clockwise by details.angle about its centre (dlib's get_mapping_to_chip).
    rect, angle = details.rect, details.angle
    centre = np.array([rect.center().x, rect.center().y])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.left(), rect.bottom()]])
    image_corners = (corners - centre) @ turn.T + centre
    chip_corners = np.array([[0, 0], [details.cols - 1, 0], [0, details.rows - 1]], dtype=np.float64)
    return cv2.getAffineTransform(image_corners.astype(np.float32), chip_corners.astype(np.float32)).astype(
        np.float64
    )


def levelled(transform: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """``transform`` followed by the turn about the chip's centre that makes the eye line level."""
    eyes = five_points(landmarks)[:2] @ transform[:, :2].T + transform[:, 2]
    dx, dy = eyes[1] - eyes[0]
    turn = cv2.getRotationMatrix2D(
        ((size - 1) / 2.0, (size - 1) / 2.0), float(np.degrees(np.arctan2(dy, dx))), 1.0
    )
    linear = turn[:, :2] @ transform[:, :2]
    return np.hstack([linear, (turn[:, :2] @ transform[:, 2] + turn[:, 2])[:, None]])


def chip_transform(
    landmarks: np.ndarray, size: int = DEFAULT_SIZE, template: Template = "arcface"
) -> np.ndarray:
    """2x3 similarity from image pixels to the pixels of a ``size`` x ``size`` chip."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be {MIN_SIZE}-{MAX_SIZE}, not {size}")
    if template == "arcface":
        return eye_level_similarity(five_points(landmarks), ARCFACE_112 * (size / 112.0))
    if template == "dlib":
        return levelled(dlib_chip_transform(landmarks, size), landmarks, size)
    raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")


def warp_chip(image: np.ndarray, transform: np.ndarray, size: int, border: Border = "black") -> np.ndarray:
    """The ``size`` x ``size`` chip of ``image`` under the 2x3 ``transform`` (image -> chip)."""
    matrix = np.asarray(transform, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        # Reduce the region under the chip first (area averaging), then warp what is left.
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
        region = corners @ inverse.T
        height, width = image.shape[:2]
        x0, y0 = np.maximum(np.floor(region.min(axis=0)).astype(int) - 1, 0)
        x1 = min(width, int(np.ceil(region[:, 0].max())) + 2)
        y1 = min(height, int(np.ceil(region[:, 1].max())) + 2)
        if x0 < x1 and y0 < y1:
            factor = 1.0 / (2.0 * scale)  # leave the last factor of 2 to the bilinear warp
            small_size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
            small = cv2.resize(image[y0:y1, x0:x1], small_size, interpolation=cv2.INTER_AREA)
            fx, fy = small_size[0] / (x1 - x0), small_size[1] / (y1 - y0)
            # small pixel u = (x - x0 + 0.5) * fx - 0.5, so x = (u + 0.5) / fx - 0.5 + x0
            to_image = np.array(
                [[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0], [0, 0, 1]]
            )
            image, matrix = small, matrix @ to_image
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=BORDERS[border], borderValue=0
    )


@dataclass(frozen=True)
class AlignedChip:
    transform: np.ndarray  # (2, 3) image pixels -> chip pixels
    chip: np.ndarray  # (size, size, channels) uint8


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = DEFAULT_SIZE,
    template: Template = "arcface",
    border: Border = "black",
) -> AlignedChip:
    """The aligned ``size`` x ``size`` chip of one face and the transform that made it."""
    transform = chip_transform(landmarks, size, template)
    return AlignedChip(transform, warp_chip(image, transform, size, border))
