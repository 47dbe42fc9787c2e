"""Probes and metrics: GET /healthz (alive), GET /readyz (models loaded and warm), GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import MetricsDep, StateDep
from service.errors import NotReady
from service.metrics import CONTENT_TYPE
from service.schemas import Status, error_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status, summary="Liveness: the process answers")
async def healthz() -> Status:
    return Status(status="ok")


@router.get(
    "/readyz",
    response_model=Status,
    responses=error_responses(503),
    summary="Readiness: 200 once the models are loaded and warm, else 503 not_ready",
)
async def readyz(state: StateDep) -> Status:
    if state.engine is None:
        raise NotReady("the models are not loaded yet")
    return Status(status="ready", model=state.engine.card.name)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}, **error_responses(401)},
    summary="Prometheus metrics",
)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
