"""GET /info: the model card of the model being served."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import EngineDep, SettingsDep
from service.imaging import SUPPORTED
from service.schemas import InfoResponse, InputOut, error_responses

router = APIRouter(tags=["info"])


@router.get(
    "/info",
    response_model=InfoResponse,
    responses=error_responses(401, 503),
    summary="Model card: name, version, sha256, dim, input size, threshold and its calibration, LFW, teachers",
)
async def info(engine: EngineDep, settings: SettingsDep) -> InfoResponse:
    card, spec = engine.card, engine.card.spec
    detector = engine.detector.config
    return InfoResponse(
        name=card.name,
        version=card.version,
        sha256=card.sha256,
        dim=card.dim,
        input=[
            InputOut(
                width=c.input.width,
                height=c.input.height,
                colour_order=c.input.colour_order,
                flip_average=c.flip_average,
                shifts=c.shifts,
            )
            for c in spec.components
        ],
        threshold=card.threshold,
        threshold_calibration=spec.threshold_calibration,
        manifest_threshold=spec.threshold,
        operating_points=spec.operating_points,
        lfw=spec.lfw,
        teachers=spec.teachers,
        description=spec.description,
        provenance=spec.provenance,
        components=[{"file": c.file, "sha256": c.sha256} for c in spec.components],
        detector={
            "name": "YuNet",
            "score_threshold": detector.score_threshold,
            "nms_threshold": detector.nms_threshold,
            "max_side": detector.max_side,
        },
        limits={
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
            "max_images": settings.max_images,
        },
        formats=list(SUPPORTED),
    )
