"""Typed dependencies for the routes."""

from typing import Annotated

from fastapi import Depends, Request

from app.api.admission import AdmissionQueue
from app.api.budget import PixelBudget
from app.api.errors import ApiError
from app.config import Settings
from app.inference import LandmarkPredictor


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_predictor(request: Request) -> LandmarkPredictor:
    predictor = getattr(request.app.state, "predictor", None)
    if predictor is None or not request.app.state.ready:
        raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "1"})
    return predictor


async def get_pixel_budget(request: Request) -> PixelBudget:
    """The worker's budget of pixels in progress, LANDMARKS_MAX_PIXELS units (made on first use; async,
    so it runs on the event loop and two requests cannot both make one)."""
    budget = getattr(request.app.state, "pixel_budget", None)
    if budget is None:
        budget = request.app.state.pixel_budget = PixelBudget(request.app.state.settings.max_pixels)
    return budget


def get_admission(request: Request) -> AdmissionQueue:
    """The worker's admission queue (made with the app, shared with the middleware)."""
    return request.app.state.admission


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PredictorDep = Annotated[LandmarkPredictor, Depends(get_predictor)]
PixelBudgetDep = Annotated[PixelBudget, Depends(get_pixel_budget)]
