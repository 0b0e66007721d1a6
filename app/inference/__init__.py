"""The inference layer: image bytes in, faces with 68 landmarks out.

Pure Python, numpy, OpenCV, Pillow, dlib and ONNX Runtime (torch only to read or export a checkpoint,
or for the torch runtime); it imports no web framework and nothing from
``training``. The service, the CLI and the evaluation all go through :class:`LandmarkPredictor`; photos
(bytes) go through ``pipeline.PhotoPipeline`` first, the one path of the photo routes, the batch and the CLI.
"""

from app.inference.detector import Box, Detection, FaceDetector
from app.inference.errors import (
    InferenceError,
    InvalidImageError,
    ModelLoadError,
    TooManyPixelsError,
    UnsupportedMediaTypeError,
)
from app.inference.predictor import Face, LandmarkPredictor

__all__ = [
    "Box",
    "Detection",
    "Face",
    "FaceDetector",
    "InferenceError",
    "InvalidImageError",
    "LandmarkPredictor",
    "ModelLoadError",
    "TooManyPixelsError",
    "UnsupportedMediaTypeError",
]
