"""The one typed object a worker's app holds (``app.state.service``), and the way to reach it."""

from dataclasses import dataclass

import anyio
from starlette.applications import Starlette

from app.api.admission import AdmissionQueue
from app.api.auth import ApiKeys
from app.api.budget import PixelBudget
from app.config import Settings
from app.inference import LandmarkPredictor
from app.inference.pipeline import PhotoPipeline


@dataclass
class ServiceState:
    """Made with the app (settings, admission queue, API keys); each lifespan sets the pipeline and a
    fresh pixel budget, and the readiness fields follow loading, warm-up and shutdown."""

    settings: Settings
    admission: AdmissionQueue
    api_keys: ApiKeys
    pipeline: PhotoPipeline | None = None
    pixel_budget: PixelBudget | None = None
    # The frame pixels of the videos being decoded: each holds its frame size for its whole length, since
    # its decoder keeps buffers of that size between frames (app.api.routes.video).
    video_budget: PixelBudget | None = None
    # Opening a video decodes its first frame before its size is known: one opens at a time.
    video_probe: anyio.Lock | None = None
    ready: bool = False
    shutting_down: bool = False
    not_ready_reason: str | None = "model not loaded yet"

    @property
    def predictor(self) -> LandmarkPredictor | None:
        return None if self.pipeline is None else self.pipeline.predictor


def service_state(app: Starlette) -> ServiceState:
    """The app's state (for code that has the app but no request: the lifespan, WebSockets)."""
    state: ServiceState = app.state.service
    return state
