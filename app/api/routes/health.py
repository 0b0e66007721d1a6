from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ServiceDep
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
async def ready(service: ServiceDep) -> JSONResponse:
    if service.ready:
        return JSONResponse(HealthStatus(status="ready").model_dump())
    reason = service.not_ready_reason or "model not loaded yet"
    return JSONResponse(HealthStatus(status="not_ready", reason=reason).model_dump(), status_code=503)
