"""POST /verify (two photos) and POST /verify/embeddings (two stored embeddings)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile

from service.deps import EngineDep, SettingsDep, read_upload, require_json, require_multipart
from service.routes.options import SingleFaceDep, ThresholdDep
from service.schemas import (
    EmbeddingsVerifyRequest,
    EmbeddingsVerifyResponse,
    FaceOut,
    ModelRef,
    VerifyResponse,
    error_responses,
)
from service.similarity import cosine, is_match, parse_embedding

router = APIRouter(tags=["verify"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    dependencies=[Depends(require_multipart)],
    responses=error_responses(400, 401, 413, 415, 422, 503, 500),
    summary="Are the main faces of two photos the same person?",
)
def verify(
    engine: EngineDep,
    settings: SettingsDep,
    threshold: ThresholdDep,
    require_single_face: SingleFaceDep,
    image1: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP photo")],
    image2: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP photo")],
) -> VerifyResponse:
    # A plain ``def``: FastAPI runs it in a worker thread, so decoding and ONNX Runtime never block the loop.
    started = time.perf_counter()
    uploads = [read_upload(image1, "image1", settings.max_upload_bytes),
               read_upload(image2, "image2", settings.max_upload_bytes)]
    first, second = engine.analyse(uploads, require_single_face=require_single_face)
    used = engine.card.threshold if threshold is None else threshold
    similarity = cosine(first.embedding, second.embedding)
    return VerifyResponse(
        verified=is_match(similarity, used),
        similarity=similarity,
        threshold=used,
        faces=[FaceOut.of(first.face, first.faces_detected), FaceOut.of(second.face, second.faces_detected)],
        model=ModelRef.of(engine.card),
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@router.post(
    "/verify/embeddings",
    response_model=EmbeddingsVerifyResponse,
    dependencies=[Depends(require_json)],
    responses=error_responses(401, 413, 415, 422, 503, 500),
    summary="Compare two stored embeddings (from POST /embed with the same model)",
)
async def verify_embeddings(engine: EngineDep, body: EmbeddingsVerifyRequest) -> EmbeddingsVerifyResponse:
    # Microseconds of numpy: cheaper on the loop than a hop to a worker thread.
    started = time.perf_counter()
    first = parse_embedding(body.embedding1, engine.card.dim, "embedding1")
    second = parse_embedding(body.embedding2, engine.card.dim, "embedding2")
    threshold = engine.card.threshold if body.threshold is None else body.threshold
    similarity = cosine(first, second)
    return EmbeddingsVerifyResponse(
        verified=is_match(similarity, threshold),
        similarity=similarity,
        threshold=threshold,
        model=ModelRef.of(engine.card),
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )
