from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.schemas import HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthStatus, summary="The process is up")
async def live() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get(
    "/ready",
    response_model=HealthStatus,
    summary="The model is loaded and warmed up",
    responses={503: {"model": HealthStatus, "description": "Still loading, or loading failed"}},
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    if getattr(state, "ready", False):
        return JSONResponse(HealthStatus(status="ready").model_dump())
    reason = getattr(state, "not_ready_reason", None) or "model not loaded yet"
    return JSONResponse(HealthStatus(status="not_ready", reason=reason).model_dump(), status_code=503)
