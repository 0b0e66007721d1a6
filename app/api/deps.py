"""Typed dependencies for the routes."""

from typing import Annotated

from fastapi import Depends, Request

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


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PredictorDep = Annotated[LandmarkPredictor, Depends(get_predictor)]
