"""Head pose (yaw, pitch, roll in degrees) from 68 iBUG points, by ``cv2.solvePnP`` against a 3D mean face.

Sign convention (the same as the one the README and /docs state), for a photo as it is displayed:

- **yaw > 0**: the face turns towards the right of the image (the subject turns to their own left; the
  nose tip moves right of the eyes' midpoint); yaw < 0 towards the left. A mirrored photo flips its sign.
- **pitch > 0**: the face tilts up (chin raised); pitch < 0 down. Mirroring leaves it unchanged.
- **roll > 0**: the face is rotated counter-clockwise in the image (the line from its right eye to its
  left eye, i.e. from the viewer's left to right, rises); a photo rotated by +t degrees counter-clockwise
  has roll + t. A mirrored photo flips its sign.

The angles are intrinsic rotations of the head in camera axes applied in the order pitch (about the
horizontal image axis), then yaw (vertical axis), then roll (the viewing axis), so roll is exactly the
in-image rotation. They describe the head relative to the line of sight from the camera to the face:
the camera is taken to look straight at the face with a long focal length (nearly weak perspective),
since a photo carries no calibration, so the result depends on the points alone, not on where the face
sits in the photo.

The mean face, ``MEAN_FACE``, was derived for this project by ``python -m training.mean_face`` from the
2D labels of the AFLW2000-3D training split (rigid factorisation, Tomasi & Kanade 1992, made mirror
symmetric; see that module). Pose is solved on the points that keep their place on the head whatever
the labelling convention and the expression (``POSE_POINTS``: brows, nose, eyes and the mouth corners):
the jaw contour is labelled differently on turned faces (AFLW2000-3D's 3D convention against 300-W's
visible contour), and the lips move with the expression. That subset and ``FOCAL_FACTOR`` were chosen on
the AFLW2000-3D training split: mean error of |yaw| 3.5 degrees with the shipped model's points
(3.7 with all 68 points or all 51 inner points), 4.7 with dlib's points (6.2 with all 68);
figures on the validation split are in the model card.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

# (68, 3) iBUG points of the mean face in the head's axes: x from the viewer's left to right in a frontal
# photo, y downwards, z away from the viewer; origin at the centroid; unit: the outer-eye-corner distance.
MEAN_FACE: np.ndarray = np.array(
    [
        [-0.8175, -0.3349, 0.7593],  # 0
        [-0.7961, -0.1183, 0.7232],  # 1
        [-0.7518, 0.0846, 0.7007],  # 2
        [-0.7077, 0.2699, 0.6645],  # 3
        [-0.6440, 0.4693, 0.5741],  # 4
        [-0.5383, 0.6270, 0.4135],  # 5
        [-0.4112, 0.7280, 0.2144],  # 6
        [-0.2434, 0.8154, 0.0239],  # 7
        [-0.0000, 0.8723, -0.0578],  # 8
        [0.2434, 0.8154, 0.0239],  # 9
        [0.4112, 0.7280, 0.2144],  # 10
        [0.5383, 0.6270, 0.4135],  # 11
        [0.6440, 0.4693, 0.5741],  # 12
        [0.7077, 0.2699, 0.6645],  # 13
        [0.7518, 0.0846, 0.7007],  # 14
        [0.7961, -0.1183, 0.7232],  # 15
        [0.8175, -0.3349, 0.7593],  # 16
        [-0.6506, -0.6058, 0.1153],  # 17
        [-0.5550, -0.6896, -0.0048],  # 18
        [-0.4320, -0.7171, -0.0879],  # 19
        [-0.3179, -0.7069, -0.1417],  # 20
        [-0.2161, -0.6765, -0.1698],  # 21
        [0.2161, -0.6765, -0.1698],  # 22
        [0.3179, -0.7069, -0.1417],  # 23
        [0.4320, -0.7171, -0.0879],  # 24
        [0.5550, -0.6896, -0.0048],  # 25
        [0.6506, -0.6058, 0.1153],  # 26
        [-0.0000, -0.4355, -0.2169],  # 27
        [-0.0000, -0.2963, -0.3197],  # 28
        [-0.0000, -0.1707, -0.4270],  # 29
        [-0.0000, -0.0529, -0.4576],  # 30
        [-0.1355, 0.0597, -0.2295],  # 31
        [-0.0759, 0.0671, -0.2749],  # 32
        [-0.0000, 0.0818, -0.2958],  # 33
        [0.0759, 0.0671, -0.2749],  # 34
        [0.1355, 0.0597, -0.2295],  # 35
        [-0.5000, -0.4383, 0.0264],  # 36
        [-0.4218, -0.4903, -0.0506],  # 37
        [-0.3175, -0.4887, -0.0541],  # 38
        [-0.2199, -0.4282, -0.0359],  # 39
        [-0.3104, -0.4062, -0.0577],  # 40
        [-0.4211, -0.4051, -0.0344],  # 41
        [0.2199, -0.4282, -0.0359],  # 42
        [0.3175, -0.4887, -0.0541],  # 43
        [0.4218, -0.4903, -0.0506],  # 44
        [0.5000, -0.4383, 0.0264],  # 45
        [0.4211, -0.4051, -0.0344],  # 46
        [0.3104, -0.4062, -0.0577],  # 47
        [-0.3015, 0.3409, -0.0920],  # 48
        [-0.1977, 0.2665, -0.2279],  # 49
        [-0.0667, 0.2177, -0.2971],  # 50
        [-0.0000, 0.2290, -0.3046],  # 51
        [0.0667, 0.2177, -0.2971],  # 52
        [0.1977, 0.2665, -0.2279],  # 53
        [0.3015, 0.3409, -0.0920],  # 54
        [0.1930, 0.4189, -0.1988],  # 55
        [0.0999, 0.4600, -0.2507],  # 56
        [-0.0000, 0.4684, -0.2628],  # 57
        [-0.0999, 0.4600, -0.2507],  # 58
        [-0.1930, 0.4189, -0.1988],  # 59
        [-0.2805, 0.3381, -0.0973],  # 60
        [-0.0900, 0.2981, -0.2457],  # 61
        [-0.0000, 0.2927, -0.2663],  # 62
        [0.0900, 0.2981, -0.2457],  # 63
        [0.2805, 0.3381, -0.0973],  # 64
        [0.0904, 0.3644, -0.2357],  # 65
        [-0.0000, 0.3716, -0.2495],  # 66
        [-0.0904, 0.3644, -0.2357],  # 67
    ]
)

POSE_POINTS: np.ndarray = np.r_[17:48, 48, 54]
NOSE_TIP = 30
# Camera distance in units of the face's spread: long enough to be close to weak perspective.
FOCAL_FACTOR = 10.0


@dataclass(frozen=True)
class HeadPose:
    """Head rotation in degrees; the sign convention is in this module's docstring."""

    yaw: float
    pitch: float
    roll: float

    def to_dict(self, decimals: int = 2) -> dict[str, float]:
        return {
            "yaw": round(self.yaw, decimals),
            "pitch": round(self.pitch, decimals),
            "roll": round(self.roll, decimals),
        }

    def rotation(self) -> np.ndarray:
        """The 3x3 rotation from the head's axes to the camera's (x right, y down, z into the scene)."""
        return rotation_matrix(self.yaw, self.pitch, self.roll)


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(-roll) @ Ry(-yaw) @ Rx(-pitch) in camera axes (y down, so the signs turn to the convention)."""
    a, b, g = np.radians([-pitch, -yaw, -roll])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_angles(rotation: np.ndarray) -> HeadPose:
    """The inverse of :func:`rotation_matrix`."""
    # Scalar math: this runs once per served face, where numpy's per-call cost outweighs the arithmetic.
    r = np.asarray(rotation, dtype=np.float64).tolist()
    beta = math.asin(min(1.0, max(-1.0, -r[2][0])))
    alpha = math.atan2(r[2][1], r[2][2])
    gamma = math.atan2(r[1][0], r[0][0])
    return HeadPose(yaw=-math.degrees(beta), pitch=-math.degrees(alpha), roll=-math.degrees(gamma))


_MODEL_POINTS = np.ascontiguousarray(MEAN_FACE[POSE_POINTS])


def head_poses(points: np.ndarray) -> list[HeadPose]:
    """Yaw, pitch and roll of each face of an (N, 68, 2) array of points in image pixels."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, len(MEAN_FACE), 2)
    # Contiguous: an index array on the middle axis need not give C order, and solvePnP requires it.
    image_points = np.ascontiguousarray(points[:, POSE_POINTS])
    centres = image_points.mean(axis=1)
    spreads = np.sqrt(((image_points - centres[:, None]) ** 2).sum(axis=2).mean(axis=1))
    poses = []
    for face, (cx, cy), spread in zip(image_points, centres.tolist(), spreads.tolist(), strict=True):
        focal = FOCAL_FACTOR * (spread or 1.0)
        camera = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
        try:
            ok, rvec, _ = cv2.solvePnP(_MODEL_POINTS, face, camera, None, flags=cv2.SOLVEPNP_SQPNP)
        except cv2.error:
            ok = False
        # Not solved only for collapsed points (all in one place): no pose to speak of.
        poses.append(euler_angles(cv2.Rodrigues(rvec)[0]) if ok else HeadPose(0.0, 0.0, 0.0))
    return poses


def head_pose(points: np.ndarray) -> HeadPose:
    """Yaw, pitch and roll of a face from its (68, 2) points in image pixels."""
    return head_poses(np.asarray(points)[None])[0]
