"""Domain errors. Each carries a stable machine-readable ``code`` and a human message; the web layer
maps them to HTTP statuses in one place (``app.api.errors``)."""


class InferenceError(Exception):
    """Base class of every error the inference layer raises on purpose."""

    code = "inference_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImageError(InferenceError):
    """The bytes are not a decodable image (empty, random, truncated, corrupt)."""

    code = "invalid_image"


class UnsupportedMediaTypeError(InferenceError):
    """The bytes are a recognisable file, but not an image format we accept."""

    code = "unsupported_media_type"


class TooManyPixelsError(InferenceError):
    """The image header announces more pixels than the configured limit (checked before decoding)."""

    code = "too_many_pixels"


class ModelLoadError(InferenceError):
    """The checkpoint is missing, unreadable or inconsistent."""

    code = "model_load_error"


class InvalidVideoError(InferenceError):
    """The file is not a decodable video (random bytes, a photo, no frames, no frame rate)."""

    code = "invalid_video"


class TooManyFramesError(InferenceError):
    """The video is longer than the configured frame limit."""

    code = "too_many_frames"
