"""POST /embed: the embedding of the main face of each photo."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile
from starlette.concurrency import run_in_threadpool

from service.deps import EngineDep, SettingsDep, analyse_parts, require_multipart
from service.errors import InvalidRequest
from service.routes.options import SingleFaceDep
from service.schemas import EmbedResponse, EmbedResult, ModelRef, error_responses

router = APIRouter(tags=["embed"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    dependencies=[Depends(require_multipart)],
    responses=error_responses(400, 401, 413, 415, 422, 503, 500),
    summary="Embed the main face of each photo (several image parts: one result each, same order)",
)
async def embed(
    engine: EngineDep,
    settings: SettingsDep,
    require_single_face: SingleFaceDep,
    image: Annotated[list[UploadFile], File(description="One or more JPEG, PNG, WebP or BMP photos")],
) -> EmbedResponse:
    started = time.perf_counter()
    if len(image) > settings.max_images:
        raise InvalidRequest(f"{len(image)} image parts; at most {settings.max_images} per request", field="image")
    parts = [(part, f"image[{i}]") for i, part in enumerate(image)]
    # One worker thread for decoding and ONNX Runtime; the loop is never blocked (see routes/verify.py).
    results = await run_in_threadpool(analyse_parts, engine, parts, settings.max_upload_bytes, require_single_face)
    return EmbedResponse(
        model=ModelRef.of(engine.card),
        dim=engine.card.dim,
        results=[EmbedResult.of_embedding(result, engine.card) for result in results],
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
