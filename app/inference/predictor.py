"""The one inference path: image -> faces with 68 landmarks in original-image pixels (and, where the
checkpoint has an error head, an estimate of their error)."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.calibration import ErrorCalibration, hard_face_flip
from app.inference.checkpoint import LoadedModel, Stage
from app.inference.detector import Box, Detection, FaceDetector, UpsamplePolicy
from app.inference.export import load_model
from app.inference.geometry import Frame, crop_frame, frames_to_image, landmark_frames
from app.inference.landmarks import FLIP_PERMUTATION
from app.inference.pose import HeadPose, head_poses
from app.inference.runtime import DEFAULT_RUNTIME, Network, load_network, standardise

# Crops per forward pass (see StageRunner._forward).
CHUNK = 8


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    landmarks: np.ndarray  # (68, 2) float, original-image pixels, iBUG order
    pose: HeadPose  # from the landmarks (app.inference.pose)
    # Expected NME (box) of these landmarks, from the checkpoint's error head; None without one.
    error_estimate: float | None = None

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        data: dict[str, Any] = {
            "box": {
                "left": self.box.left,
                "top": self.box.top,
                "width": self.box.width,
                "height": self.box.height,
            },
            "score": round(self.score, 4),
            "landmarks": np.round(self.landmarks, decimals).tolist(),
            "pose": self.pose.to_dict(decimals),
        }
        if self.error_estimate is not None:
            data["error_estimate"] = round(self.error_estimate, 4)
        return data


class StageRunner:
    """One stage of the cascade as served: crops of frames -> normalised points (and log error), the
    network on ``runtime`` (``app.inference.runtime``) with ``threads`` intra-op threads."""

    def __init__(
        self,
        stage: Stage,
        *,
        flip_test_time: bool,
        optimise: bool = True,
        runtime: str = DEFAULT_RUNTIME,
        threads: int | None = None,
    ) -> None:
        self.stage = stage
        self.input_size = stage.config.input_size
        self.flip_test_time = flip_test_time
        self.has_error = stage.config.error_head
        self.runtime = runtime
        self.network: Network = load_network(stage, runtime, threads=threads, optimise=optimise)

    def frames(self, boxes: list[Box], previous: np.ndarray | None) -> list[Frame]:
        """Where this stage crops: the boxes as they are, or the frames of the previous points."""
        if self.stage.crop == "box" or previous is None:
            return [Frame.from_box(b) for b in boxes]
        return landmark_frames(previous)

    def crops(self, image: np.ndarray, frames: list[Frame]) -> np.ndarray:
        """(N, S, S, C) uint8 crops of the frames."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return np.stack([crop_frame(image, frame, self.input_size) for frame in frames])

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, C) uint8 -> (N, C, S, S) float32 array standardised with the stage's mean/std."""
        return standardise(crops, self.stage.mean, self.stage.std)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """The network over a batch, in chunks of ``CHUNK`` crops: on CPU a chunk's activations stay in
        cache, and measured per crop, 8 at a time is faster than 24 or 48 at once."""
        outputs = [self.network(batch[i : i + CHUNK]) for i in range(0, len(batch), CHUNK)]
        return np.concatenate(outputs).astype(np.float64)

    def _outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """((N, P, 2) normalised points, (N,) log expected NME relative to the frame side, or None)."""
        out = self._forward(batch)
        points_end = self.stage.config.num_points * 2
        error = out[:, points_end] if self.has_error else None
        return out[:, :points_end].reshape(len(batch), -1, 2), error

    def _with_mirror(
        self, batch: np.ndarray, points: np.ndarray, error: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``points`` and ``error`` of ``batch`` averaged with the network's on the mirrored crops."""
        mirrored, mirrored_error = self._outputs(np.ascontiguousarray(batch[..., ::-1]))
        mirrored = mirrored[:, FLIP_PERMUTATION]
        mirrored[..., 0] = 1.0 - mirrored[..., 0]
        if error is not None and mirrored_error is not None:
            error = (error + mirrored_error) / 2.0
        return (points + mirrored) / 2.0, error

    def regress(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, S, S, C) uint8 crops -> ((N, 68, 2) normalised frame coordinates, (N,) log expected NME
        relative to the frame side, or None), averaged with the mirrored crops' when flipping."""
        batch = self.normalise(crops)
        points, error = self._outputs(batch)
        if self.flip_test_time:
            return self._with_mirror(batch, points, error)
        return points, error

    def mirror_average(
        self, crops: np.ndarray, points: np.ndarray, error: np.ndarray | None, which: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``regress``'s output with the crops selected by the boolean mask ``which`` averaged with their
        mirror images (one more network pass for those crops only)."""
        index = np.flatnonzero(which)
        if self.flip_test_time or not len(index):
            return points, error
        points, error = points.copy(), None if error is None else error.copy()
        averaged, averaged_error = self._with_mirror(
            self.normalise(crops[index]), points[index], None if error is None else error[index]
        )
        points[index] = averaged
        if error is not None:
            error[index] = averaged_error
        return points, error


class LandmarkPredictor:
    """dlib HOG boxes + the checkpoint's networks: the first stage regresses the points from the box
    crop, each refinement stage again from a crop aligned on the points before it.

    ``flip_test_time`` averages the last stage's prediction of each crop with that of its mirror image;
    ``None`` takes the checkpoint's recommendation. ``flip_hard_faces`` does so only for the faces whose
    own error estimate exceeds the checkpoint's ``hard_face_flip`` threshold (if it has one), so the
    extra pass is paid where the points are least sure. ``runtime`` runs the networks
    (``app.inference.runtime``: onnxruntime by default, as served; openvino; or torch, traced and fused
    copies of the checkpoint's networks when ``optimise``) on ``threads`` intra-op threads (None: the
    runtime's default; the service sets 1 per worker); a torch
    model given to an ONNX runtime is exported in memory. ``calibrate_error`` applies the checkpoint's
    ``error_calibration`` (if it has one) to the error estimate of detected faces
    (``app.inference.calibration``).
    """

    def __init__(
        self,
        model: LoadedModel,
        detector: FaceDetector | None = None,
        *,
        flip_test_time: bool | None = None,
        flip_hard_faces: bool = True,
        optimise: bool = True,
        calibrate_error: bool = True,
        runtime: str = DEFAULT_RUNTIME,
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.calibration = ErrorCalibration.from_metadata(model.metadata) if calibrate_error else None
        self.detector = detector or FaceDetector()
        if flip_test_time is None:
            flip_test_time = bool(model.metadata.get("flip_test_time", False))
        self.flip_test_time = flip_test_time
        # The checkpoint's hard_face_flip: the raw error estimate (NME box) above which a face is averaged
        # with its mirror image; None: never (flip_hard_faces off, no threshold, or every face flipped).
        threshold = hard_face_flip(model.metadata) if flip_hard_faces else None
        self.hard_face_flip = None if flip_test_time else threshold
        # Flip averaging only where it pays: on the stage whose points are served (earlier stages only
        # place the frames of later ones).
        last = len(model.stages) - 1
        self.runtime = runtime
        self.stages = [
            StageRunner(
                stage,
                flip_test_time=flip_test_time and i == last,
                optimise=optimise,
                runtime=runtime,
                threads=threads,
            )
            for i, stage in enumerate(model.stages)
        ]
        self.input_size = self.stages[0].input_size

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, detector: FaceDetector | None = None, **kwargs: Any
    ) -> "LandmarkPredictor":
        """The predictor of a checkpoint (``.pt``) or of its ONNX export (``.json``): the ONNX runtimes
        serve the export beside a checkpoint when there is one (``app.inference.export.load_model``)."""
        return cls(load_model(path, kwargs.get("runtime", DEFAULT_RUNTIME)), detector, **kwargs)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    # The entry points: detect (one image), faces (detections of one or more images), estimate (boxes
    # of one or more images, no detector), predict (every face of one image), follow (a stream's faces
    # from their points in the frame before). Each batch form runs the crops of all images through
    # each stage's network together; one image is a batch of one.

    def detect(self, image: np.ndarray, policy: UpsamplePolicy = 0) -> list[Detection]:
        """Faces in an RGB image, largest first, at the upsampling level ``policy`` names (``"auto"``:
        ``self.detector.resolve_upsample`` of the image's size)."""
        return self.detector.detect(image, policy)

    def faces(self, images: Sequence[np.ndarray], detections: Sequence[list[Detection]]) -> list[list[Face]]:
        """For each image, a Face (box, score, landmarks, pose, error estimate) for each of its
        detections."""
        estimates = self.estimate(
            images,
            [[d.box for d in found] for found in detections],
            [[d.score for d in found] for found in detections],
        )
        return [
            [
                Face(d.box, d.score, p, pose, None if errors is None else float(errors[i]))
                for i, (d, p, pose) in enumerate(zip(found, points, head_poses(points), strict=True))
            ]
            for found, (points, errors) in zip(detections, estimates, strict=True)
        ]

    def predict(self, image: np.ndarray, policy: UpsamplePolicy = 0) -> list[Face]:
        """Every face in an RGB image, largest first, detected at ``policy`` (the photo pipeline,
        ``app.inference.pipeline``, adds decoding, the limits and ``max_faces``)."""
        return self.faces([image], [self.detect(image, policy)])[0]

    def estimate(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[list[Box]],
        scores: Sequence[Sequence[float]] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """For each image and its boxes: ((N, 68, 2) landmarks in original-image pixels, (N,) expected
        NME (box) or None), through every stage of the cascade. With the detector's ``scores`` of the
        boxes, the error estimate is the calibrated one the service serves; without them it is the
        error head's own."""
        return self._cascade(images, boxes, scores)

    def follow(
        self, image: np.ndarray, previous: np.ndarray, boxes: list[Box], scores: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Faces followed from their points in an earlier frame of a stream, with no detection: the
        cascade's landmark-aligned stages run from the frames of ``previous`` ((N, 68, 2) pixels), so a
        face that moved a little is found again by the stage that refines points. ``boxes`` (where the
        stream puts each face's detector box now) scale the error estimate and feed a box-cropped stage
        in a cascade that has no other; ``scores`` calibrate the estimate. Returns ((N, 68, 2) points
        in original pixels, (N,) expected NME (box) or None)."""
        return self._cascade([image], [boxes], [scores], previous)[0]

    def _cascade(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[list[Box]],
        scores: Sequence[Sequence[float]] | None,
        previous: np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """``estimate``, or with ``previous`` points (of all boxes, image after image) ``follow``: the
        stages from the first landmark-aligned one (the last stage in a cascade that has none)."""
        flat = [box for found in boxes for box in found]
        ends = np.cumsum([len(found) for found in boxes])
        runs = [
            (i, int(end) - len(found), int(end))
            for i, (found, end) in enumerate(zip(boxes, ends, strict=True))
        ]
        num_points = self.model.output_config.num_points
        if not flat:
            return [(np.zeros((0, num_points, 2)), None) for _ in images]
        first, points = 0, None
        if previous is not None:
            aligned = [i for i, stage in enumerate(self.stages) if stage.stage.crop != "box"]
            first = aligned[0] if aligned else len(self.stages) - 1
            points = np.asarray(previous, dtype=np.float64) if aligned else None
        box_sides = np.array([np.sqrt(b.width * b.height) for b in flat])
        for number in range(first, len(self.stages)):
            stage = self.stages[number]
            frames = stage.frames(flat, points)
            # Boxes come image after image, so each image's frames are one contiguous run.
            crops = np.concatenate(
                [stage.crops(images[i], frames[start:end]) for i, start, end in runs if end > start]
            )
            normalised, log_error = stage.regress(crops)
            if number == len(self.stages) - 1 and self.hard_face_flip is not None and log_error is not None:
                hard = self._raw_estimate(log_error, frames, box_sides) > self.hard_face_flip
                normalised, log_error = stage.mirror_average(crops, normalised, log_error, hard)
            points = frames_to_image(frames, normalised)
        assert points is not None
        errors = None
        if log_error is not None:
            errors = self._raw_estimate(log_error, frames, box_sides)
            if self.calibration is not None and scores is not None:
                flat_scores = np.array([score for found in scores for score in found], dtype=np.float64)
                if len(flat_scores) != len(flat):
                    raise ValueError(f"{len(flat_scores)} detector scores for {len(flat)} boxes")
                errors = self.calibration.apply(errors, flat_scores, box_sides)
        return [(points[start:end], None if errors is None else errors[start:end]) for _, start, end in runs]

    @staticmethod
    def _raw_estimate(log_error: np.ndarray, frames: list[Frame], box_sides: np.ndarray) -> np.ndarray:
        """The error head's estimate in NME (box): it predicts the log NME relative to its frame's side,
        rescaled here to the box's sqrt(W x H)."""
        sides = np.array([np.sqrt(f.width * f.height) for f in frames])
        return np.exp(log_error) * sides / box_sides

    def warm_up(self) -> None:
        """One detection and one forward pass, so the first real request pays no start-up costs."""
        blank = np.full((96, 96, 3), 127, dtype=np.uint8)
        self.detect(blank)
        self.estimate([blank], [[Box(10, 10, 70, 70)]])
