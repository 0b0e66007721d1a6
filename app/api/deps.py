"""Typed dependencies for the routes: all of them read the app's one ``ServiceState``."""

from typing import Annotated

from fastapi import Depends, Request

from app.api.admission import AdmissionQueue
from app.api.budget import PixelBudget
from app.api.errors import ApiError
from app.api.state import ServiceState, service_state
from app.config import Settings
from app.inference import LandmarkPredictor
from app.inference.pipeline import PhotoPipeline


async def get_service(request: Request) -> ServiceState:
    return service_state(request.app)


ServiceDep = Annotated[ServiceState, Depends(get_service)]


async def get_app_settings(service: ServiceDep) -> Settings:
    return service.settings


async def get_pipeline(service: ServiceDep) -> PhotoPipeline:
    """The photo pipeline; 503 ``not_ready`` until the model is loaded and warmed up."""
    if service.pipeline is None or not service.ready:
        raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "1"})
    return service.pipeline


async def get_predictor(pipeline: Annotated[PhotoPipeline, Depends(get_pipeline)]) -> LandmarkPredictor:
    return pipeline.predictor


async def get_pixel_budget(service: ServiceDep) -> PixelBudget:
    """The worker's budget of photo pixels in progress (LANDMARKS_MAX_PIXELS_IN_FLIGHT), made at start-up."""
    assert service.pixel_budget is not None, "the lifespan makes the budget before serving"
    return service.pixel_budget


def get_admission(request: Request) -> AdmissionQueue:
    """The worker's admission queue (made with the app, shared with the middleware)."""
    return service_state(request.app).admission


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PipelineDep = Annotated[PhotoPipeline, Depends(get_pipeline)]
PredictorDep = Annotated[LandmarkPredictor, Depends(get_predictor)]
PixelBudgetDep = Annotated[PixelBudget, Depends(get_pixel_budget)]
