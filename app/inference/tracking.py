"""Faces across the frames of one stream (a video file or a live socket): tracks with ids, followed
from their last points between detections, and smoothed.

One :class:`FaceTracker` holds the state of one stream (its tracks, their filters, the frame counter);
it calls the same :class:`LandmarkPredictor` as the photo routes, so a tracked face is the same face
object the photo path returns, plus a ``track_id``:

- **Follow.** Each frame, every track is followed from its points in the frame before (moved on by
  their recent velocity): the cascade's landmark-aligned stage is drawn from those points, with no
  detector and no box stage (``LandmarkPredictor.follow``).
- **Detect.** The HOG detector scans the whole frame every ``detect_every`` frames, on any frame where
  a track's error estimate says it is lost, and on every frame while no face is tracked. A detection
  that overlaps a track confirms it (and gives it the detector's box and score); one that overlaps none
  starts a new track through the photo path (box stage, then refinement).
- **End.** A track ends when its error estimate passes ``lost_error`` and no detection confirms it,
  when its face leaves the frame, or when it has gone ``max_unconfirmed`` detections without a match.
  Two tracks on one face merge into the older one.
- **Smooth.** Each track's points go through its own One-Euro filter (``app.inference.smoothing``);
  the error estimate is that of the raw points.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.inference.detector import Box, Detection, UpsamplePolicy
from app.inference.geometry import Frame, landmark_frames
from app.inference.pose import head_poses
from app.inference.predictor import Face, LandmarkPredictor
from app.inference.smoothing import BETA, MIN_CUTOFF_HZ, OneEuroFilter


@dataclass(frozen=True)
class TrackerOptions:
    """How a stream is tracked (the service's settings give the defaults)."""

    detect_every: int = 10  # frames between whole-frame detections while faces are tracked
    lost_error: float = 0.08  # error estimate (NME box) past which a followed face counts as lost
    merge_iou: float = 0.5  # two tracks whose point boxes overlap this much are one face
    match_iou: float = 0.3  # a detection and a track whose boxes overlap this much are one face
    max_unconfirmed: int = 3  # whole-frame detections in a row that may miss a track before it ends
    min_start_score: float = 0.1  # the detector's score a detection needs to start a new track
    revive_seconds: float = 1.0  # a face found again this soon near where its track ended keeps its id
    smoothing: bool = True
    min_cutoff: float = MIN_CUTOFF_HZ
    beta: float = BETA
    upsample: UpsamplePolicy = "auto"
    max_faces: int | None = None


@dataclass(frozen=True)
class TrackedFace:
    """A face of one frame: the photo path's face (points smoothed when smoothing is on) and its track."""

    track_id: int
    face: Face
    detected: bool  # the detector found it on this frame (its box and score are the detector's)

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        return {"track_id": self.track_id, **self.face.to_dict(decimals), "detected": self.detected}


@dataclass
class _Track:
    track_id: int
    points: np.ndarray  # raw (unsmoothed) points of the last frame, (68, 2)
    box: Box
    score: float
    error: float | None
    # The detector's box relative to the landmark frame of the points it was found with: centre offset
    # and side, in units of the frame's side. Puts a detector-like box on frames it does not run on.
    box_in_frame: tuple[float, float, float, float]
    velocity: np.ndarray = field(default_factory=lambda: np.zeros((68, 2)))
    unconfirmed: int = 0
    filter: OneEuroFilter | None = None


def _box_in_frame(box: Box, points: np.ndarray) -> tuple[float, float, float, float]:
    frame = landmark_frames(points[None])[0]
    cx, cy = (box.left + box.right) / 2.0, (box.top + box.bottom) / 2.0
    return (
        (cx - frame.cx) / frame.width,
        (cy - frame.cy) / frame.width,
        box.width / frame.width,
        box.height / frame.width,
    )


def _boxes_in(frames: Sequence[Frame], relations: Sequence[tuple[float, float, float, float]]) -> list[Box]:
    """Detector-like boxes for the landmark frames of faces, each placed as its track's last detection
    was."""
    boxes = []
    for frame, (dx, dy, w, h) in zip(frames, relations, strict=True):
        side = frame.width
        width, height = max(1, round(w * side)), max(1, round(h * side))
        left = round(frame.cx + dx * side - (width - 1) / 2.0)
        top = round(frame.cy + dy * side - (height - 1) / 2.0)
        boxes.append(Box(left, top, left + width - 1, top + height - 1))
    return boxes


def _iou(a: Box, b: Box) -> float:
    width = min(a.right, b.right) - max(a.left, b.left) + 1
    height = min(a.bottom, b.bottom) - max(a.top, b.top) + 1
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / float(a.area + b.area - inter)


def _point_box(points: np.ndarray) -> Box:
    (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
    return Box(int(left), int(top), int(np.ceil(right)), int(np.ceil(bottom)))


# Mean shift of the points in one follow, in units of the face's landmark frame side, past which the
# follow runs a second time from the points it found.
REFOLLOW_SHIFT = 0.05


def _in_view(points: np.ndarray, width: int, height: int) -> bool:
    """Most of the face is inside the frame: at least half of its inner points."""
    inner = points[17:]
    inside = (inner[:, 0] >= 0) & (inner[:, 0] < width) & (inner[:, 1] >= 0) & (inner[:, 1] < height)
    return bool(inside.mean() >= 0.5)


class FaceTracker:
    """The tracks of one stream. Not thread-safe: one stream's frames are processed one at a time."""

    def __init__(self, predictor: LandmarkPredictor, options: TrackerOptions | None = None) -> None:
        self.predictor = predictor
        self.options = options or TrackerOptions()
        self.tracks: list[_Track] = []
        self.ended: list[tuple[_Track, float]] = []  # tracks that ended recently, with the time they did
        self._now = 0.0
        self.frames = 0  # frames processed
        self.detector_runs = 0
        self.tracks_started = 0
        self._since_detection = 0

    def update(self, image: np.ndarray, time: float) -> list[TrackedFace]:
        """The faces of the next frame (an RGB array) at ``time`` seconds, largest first."""
        height, width = image.shape[:2]
        self._now = time
        self.ended = [(t, at) for t, at in self.ended if time - at <= self.options.revive_seconds]
        lost = self._follow(image, width, height)
        detected: set[int] = set()
        if not self.tracks or lost or self._since_detection + 1 >= self.options.detect_every:
            detected = self._detect(image, lost)
        else:
            self._since_detection += 1
        self._merge()
        self.frames += 1
        return self._faces(time, detected)

    @property
    def summary(self) -> dict[str, int]:
        return {"frames": self.frames, "tracks": self.tracks_started, "detector_runs": self.detector_runs}

    # --- the steps of a frame ------------------------------------------------------------------------

    def _follow(self, image: np.ndarray, width: int, height: int) -> set[int]:
        """Each track moved to this frame; returns the ids of the tracks that look lost on it."""
        if not self.tracks:
            return set()
        previous = np.stack([t.points for t in self.tracks])
        predicted = previous + np.stack([t.velocity for t in self.tracks])
        relations = [t.box_in_frame for t in self.tracks]
        frames = landmark_frames(predicted)
        boxes = _boxes_in(frames, relations)
        scores = [t.score for t in self.tracks]
        points, errors = self.predictor.follow(image, predicted, boxes, scores)
        # A face that moved far from where its crop was drawn sits off-centre in it: follow it once more
        # from where it was found, so the crop catches up with fast motion.
        sides = np.array([frame.width for frame in frames])
        moved = np.linalg.norm(points - predicted, axis=2).mean(axis=1) / sides
        again = np.flatnonzero(moved > REFOLLOW_SHIFT)
        if len(again):
            again_boxes = [boxes[i] for i in again]
            second, second_errors = self.predictor.follow(
                image, points[again], again_boxes, [scores[i] for i in again]
            )
            points[again] = second
            if errors is not None and second_errors is not None:
                errors[again] = second_errors
        found_boxes = _boxes_in(landmark_frames(points), relations)
        lost: set[int] = set()
        kept = []
        for i, track in enumerate(self.tracks):
            if not _in_view(points[i], width, height):
                self.ended.append((track, self._now))  # the face left the frame: its track ends
                continue
            # Half the last step, as a damped constant-velocity guess of where the face goes next.
            track.velocity = 0.5 * (points[i] - track.points)
            track.points = points[i]
            track.box = found_boxes[i]
            track.error = None if errors is None else float(errors[i])
            if track.error is not None and track.error > self.options.lost_error:
                lost.add(track.track_id)
            kept.append(track)
        self.tracks = kept
        return lost

    def _detect(self, image: np.ndarray, lost: set[int]) -> set[int]:
        """A whole-frame detection: confirms tracks, starts new ones, ends lost ones it does not find.
        Returns the ids of the tracks the detector found on this frame."""
        self.detector_runs += 1
        self._since_detection = 0
        detections = self.predictor.detect(image, self.options.upsample)
        matched: dict[int, Detection] = {}
        fresh: list[Detection] = []
        # Greedy matching, best overlap first: few faces per frame, so no assignment solver is needed.
        pairs = sorted(
            ((_iou(d.box, t.box), i, j) for i, d in enumerate(detections) for j, t in enumerate(self.tracks)),
            reverse=True,
        )
        used_detections: set[int] = set()
        for overlap, i, j in pairs:
            track = self.tracks[j]
            if overlap < self.options.match_iou:
                break
            if i in used_detections or track.track_id in matched:
                continue
            used_detections.add(i)
            matched[track.track_id] = detections[i]
        # A track starts only from a confident detection: the detector's weakest (score near 0) are
        # mostly patterns in hair or furniture, and a real face's score rises above it on a later frame.
        fresh = [
            d
            for i, d in enumerate(detections)
            if i not in used_detections and d.score >= self.options.min_start_score
        ]
        kept = []
        relost = []
        for track in self.tracks:
            detection = matched.get(track.track_id)
            if detection is None:
                track.unconfirmed += 1
                if track.track_id in lost or track.unconfirmed > self.options.max_unconfirmed:
                    self.ended.append((track, self._now))
                    continue
            else:
                track.unconfirmed = 0
                track.box, track.score = detection.box, detection.score
                if track.track_id in lost:
                    relost.append(track)  # found again by the detector: restart from its box
                else:
                    track.box_in_frame = _box_in_frame(detection.box, track.points)
            kept.append(track)
        self.tracks = kept
        restarted = [Detection(t.box, t.score) for t in relost]
        room = None if self.options.max_faces is None else max(0, self.options.max_faces - len(self.tracks))
        fresh = fresh[:room]
        faces = self.predictor.faces([image], [restarted + fresh])[0] if restarted or fresh else []
        for track, face in zip(relost, faces, strict=False):
            self._restart(track, face)
        for face in faces[len(relost) :]:
            track = self._new_track(self._revived_id(face.box), face)
            self.tracks.append(track)
            matched[track.track_id] = Detection(face.box, face.score)
        return set(matched)

    def _revived_id(self, box: Box) -> int:
        """The id of a track that ended in the last ``revive_seconds`` near this new face's box (the
        nearest of those whose size is close), or a new id. A face the follower lost for a moment, behind
        a hand or in a fast turn, so keeps its identity."""
        centre = np.array([(box.left + box.right) / 2.0, (box.top + box.bottom) / 2.0])
        candidates = []
        for number, (track, _) in enumerate(self.ended):
            old = track.box
            distance = np.linalg.norm(centre - [(old.left + old.right) / 2.0, (old.top + old.bottom) / 2.0])
            if distance <= max(old.width, box.width) and 0.6 <= box.width / old.width <= 1.6:
                candidates.append((distance, number))
        if candidates:
            _, number = min(candidates)
            track, _ = self.ended.pop(number)
            return track.track_id
        self.tracks_started += 1
        return self.tracks_started

    def _merge(self) -> None:
        """Tracks that have converged on one face become one: the older (lower id) keeps it."""
        if len(self.tracks) < 2:
            return
        self.tracks.sort(key=lambda t: t.track_id)
        kept: list[_Track] = []
        for track in self.tracks:
            box = _point_box(track.points)
            if all(_iou(box, _point_box(other.points)) < self.options.merge_iou for other in kept):
                kept.append(track)
        self.tracks = kept

    def _faces(self, time: float, detected: set[int]) -> list[TrackedFace]:
        if not self.tracks:
            return []
        out_points = []
        for track in self.tracks:
            if self.options.smoothing and track.filter is not None:
                out_points.append(track.filter(track.points, time))
            else:
                out_points.append(track.points)
        points = np.stack(out_points)
        faces = [
            TrackedFace(
                track.track_id,
                Face(track.box, track.score, p, pose, track.error),
                track.track_id in detected,
            )
            for track, p, pose in zip(self.tracks, points, head_poses(points), strict=True)
        ]
        faces.sort(key=lambda f: f.face.box.area, reverse=True)
        return faces

    # --- tracks --------------------------------------------------------------------------------------

    def _filter(self) -> OneEuroFilter:
        return OneEuroFilter(min_cutoff=self.options.min_cutoff, beta=self.options.beta)

    def _new_track(self, track_id: int, face: Face) -> _Track:
        return _Track(
            track_id=track_id,
            points=face.landmarks,
            box=face.box,
            score=face.score,
            error=face.error_estimate,
            box_in_frame=_box_in_frame(face.box, face.landmarks),
            filter=self._filter(),
        )

    def _restart(self, track: _Track, face: Face) -> None:
        """A lost track found again by the detector: the photo path's points, a fresh filter."""
        fresh = self._new_track(track.track_id, face)
        track.points, track.box, track.score, track.error = fresh.points, fresh.box, fresh.score, fresh.error
        track.box_in_frame, track.velocity, track.filter = fresh.box_in_frame, fresh.velocity, fresh.filter
