"""Draw boxes and landmarks on a copy of an image (for /landmarks/render and the CLI)."""

import cv2
import numpy as np

from app.inference.landmarks import CONTOURS
from app.inference.predictor import Face

BOX_COLOUR = (0, 200, 0)
LINE_COLOUR = (255, 255, 0)
POINT_COLOUR = (255, 0, 0)


def draw_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    canvas = np.ascontiguousarray(image.copy())
    scale = max(1, round(max(image.shape[:2]) / 600))
    for face in faces:
        b = face.box
        cv2.rectangle(canvas, (b.left, b.top), (b.right, b.bottom), BOX_COLOUR, scale + 1)
        radius = max(1, round(b.width / 90))
        pts = np.round(face.landmarks).astype(np.int32)
        for first, last, closed in CONTOURS:
            cv2.polylines(canvas, [pts[first : last + 1]], closed, LINE_COLOUR, scale, cv2.LINE_AA)
        for x, y in pts:
            cv2.circle(canvas, (int(x), int(y)), radius, POINT_COLOUR, -1, cv2.LINE_AA)
    return canvas
