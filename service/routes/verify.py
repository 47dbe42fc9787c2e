"""POST /verify (two photos) and POST /verify/embeddings (two stored embeddings)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile
from starlette.concurrency import run_in_threadpool

from service.deps import EngineDep, SettingsDep, analyse_parts, require_json, require_multipart
from service.engine import ModelCard
from service.errors import ModelMismatch
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
from service.thresholds import resolve_threshold

router = APIRouter(tags=["verify"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    dependencies=[Depends(require_multipart)],
    responses=error_responses(400, 401, 413, 415, 422, 503, 500),
    summary="Are the main faces of two photos the same person?",
)
async def verify(
    engine: EngineDep,
    settings: SettingsDep,
    threshold: ThresholdDep,
    require_single_face: SingleFaceDep,
    image1: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP photo")],
    image2: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP photo")],
) -> VerifyResponse:
    # Decoding and ONNX Runtime run in one worker thread; the rest (microseconds) stays on the loop, which
    # spares a second thread hop for the response's validation that FastAPI makes for a plain ``def`` route.
    started = time.perf_counter()
    parts = [(image1, "image1"), (image2, "image2")]
    first, second = await run_in_threadpool(
        analyse_parts, engine, parts, settings.max_upload_bytes, require_single_face
    )
    similarity = cosine(first.embedding, second.embedding)
    return VerifyResponse(
        verified=is_match(similarity, threshold.value),
        similarity=similarity,
        threshold=threshold.value,
        far=threshold.far,
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
    description="Send each embedding's `model` (as /embed returned it) as `model1`/`model2`: embeddings of "
    "another model than the served one, or of two different models, are then refused with 422 `model_mismatch`. "
    "An embedding sent without its model is taken to be the served model's (the API before model identities).",
)
async def verify_embeddings(engine: EngineDep, body: EmbeddingsVerifyRequest) -> EmbeddingsVerifyResponse:
    # Microseconds of numpy: cheaper on the loop than a hop to a worker thread.
    started = time.perf_counter()
    _check_models(engine.card, body.model1, body.model2)
    first = parse_embedding(body.embedding1, engine.card.dim, "embedding1")
    second = parse_embedding(body.embedding2, engine.card.dim, "embedding2")
    threshold = resolve_threshold(engine.card, threshold=body.threshold, far=body.far)
    similarity = cosine(first, second)
    return EmbeddingsVerifyResponse(
        verified=is_match(similarity, threshold.value),
        similarity=similarity,
        threshold=threshold.value,
        far=threshold.far,
        model=ModelRef.of(engine.card),
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def _check_models(card: ModelCard, model1: ModelRef | None, model2: ModelRef | None) -> None:
    """422 model_mismatch unless each given identity is the served model (an omitted one is assumed to be)."""
    if model1 is not None and model2 is not None and model1 != model2:
        raise ModelMismatch(
            f"embedding1 comes from {_label(model1)} and embedding2 from {_label(model2)}: embeddings of different "
            "models cannot be compared",
            field="model2",
        )
    served = ModelRef.of(card)
    for field, ref in (("model1", model1), ("model2", model2)):
        if ref is not None and ref != served:
            raise ModelMismatch(
                f"embedding{field[-1]} comes from {_label(ref)}, but this service serves {_label(served)}: embed the "
                "photo again with the served model",
                field=field,
            )


def _label(ref: ModelRef) -> str:
    return f"{ref.name} {ref.version} (sha256 {ref.sha256[:12]})"
