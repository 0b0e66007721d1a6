"""Draw boxes, landmarks and head-pose axes on a copy of an image (for /landmarks/render and the CLI)."""

import cv2
import numpy as np

from app.inference.landmarks import CONTOURS
from app.inference.pose import NOSE_TIP
from app.inference.predictor import Face

BOX_COLOUR = (0, 200, 0)
LINE_COLOUR = (255, 255, 0)
POINT_COLOUR = (255, 0, 0)
# RGB colours of the head's axes: x (towards the subject's left, the viewer's right in a frontal photo),
# y (down the face) and z (out of the face, towards the camera when the face looks at it).
AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (40, 90, 255))
AXIS_LENGTH = 0.5  # of the box width


def pose_axes(face: Face) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The (start, end) image points of the x, y and z axes of the face's head pose, drawn from the nose
    tip, ``AXIS_LENGTH`` box widths long, projected orthographically (as the pose was solved)."""
    rotation = face.pose.rotation()
    length = AXIS_LENGTH * face.box.width
    start = face.landmarks[NOSE_TIP]
    axes = []
    for column, sign in ((0, 1.0), (1, 1.0), (2, -1.0)):  # the head's z points away from the viewer
        direction = sign * rotation[:2, column]
        end = start + length * direction
        axes.append(((float(start[0]), float(start[1])), (float(end[0]), float(end[1]))))
    return axes


def draw_faces(
    image: np.ndarray, faces: list[Face], pose: bool = True, labels: list[str] | None = None
) -> np.ndarray:
    """A copy of ``image`` (RGB) with each face's box, landmarks and, if ``pose``, head-pose axes; each
    of ``labels`` (a track id, say) is written above its face's box."""
    canvas = np.ascontiguousarray(image.copy())
    scale = max(1, round(max(image.shape[:2]) / 600))
    for number, face in enumerate(faces):
        b = face.box
        cv2.rectangle(canvas, (b.left, b.top), (b.right, b.bottom), BOX_COLOUR, scale + 1)
        if labels is not None:
            origin = (b.left, max(12 * scale, b.top - 4 * scale))
            cv2.putText(
                canvas, labels[number], origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, BOX_COLOUR, scale + 1
            )
        radius = max(1, round(b.width / 90))
        pts = np.round(face.landmarks).astype(np.int32)
        for first, last, closed in CONTOURS:
            cv2.polylines(canvas, [pts[first : last + 1]], closed, LINE_COLOUR, scale, cv2.LINE_AA)
        for x, y in pts:
            cv2.circle(canvas, (int(x), int(y)), radius, POINT_COLOUR, -1, cv2.LINE_AA)
        if pose:
            for (start, end), colour in zip(pose_axes(face), AXIS_COLOURS, strict=True):
                a, b = (round(start[0]), round(start[1])), (round(end[0]), round(end[1]))
                cv2.arrowedLine(canvas, a, b, colour, scale + 1, cv2.LINE_AA, tipLength=0.15)
    return canvas
