from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import PredictorDep
from app.api.metrics import render_metrics
from app.api.schemas import ModelInfo, StageInfo

router = APIRouter(tags=["meta"])
# /model is for API clients (behind the API keys when they are on); /metrics is for the scraper.
model_router = APIRouter(tags=["meta"])


@model_router.get("/model", response_model=ModelInfo, summary="Metadata of the served checkpoint")
async def model_info(predictor: PredictorDep) -> ModelInfo:
    model = predictor.model
    return ModelInfo(
        name=model.name,
        version=model.version,
        arch=model.config.arch,
        input_size=model.config.input_size,
        num_points=model.config.num_points,
        mean=model.mean.tolist(),
        std=model.std.tolist(),
        flip_test_time=predictor.flip_test_time,
        hard_face_flip=predictor.hard_face_flip,
        stages=[
            StageInfo(
                crop=stage.crop,
                arch=stage.config.arch,
                input_size=stage.config.input_size,
                heads=list(stage.config.heads),
                error_head=stage.config.error_head,
            )
            for stage in model.stages
        ],
        served_head=model.output_config.heads[0],
        runtime=predictor.runtime,
        export=model.export,
        metadata=model.metadata,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
