"""POST /identify (who is this? 1:N over the caller's gallery) and POST /subjects/{id}/verify (1:1 to a subject)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from service.deps import EngineDep, SettingsDep, read_upload, require_multipart
from service.engine import Engine, FaceEmbedding
from service.gallery.schemas import IdentifyResponse, MatchOut, SubjectRef, SubjectVerifyResponse, gallery_responses
from service.routes.options import SingleFaceDep, ThresholdDep
from service.routes.subjects import GalleryDep, OwnerDep
from service.schemas import FaceOut, ModelRef
from service.similarity import is_match

router = APIRouter(tags=["gallery"])

_TOP_K = "How many subjects to return, most similar first (default 5)"


async def top_k_option(
    top_k_form: Annotated[int | None, Form(alias="top_k", ge=1, le=100, description=_TOP_K)] = None,
    top_k_query: Annotated[int | None, Query(alias="top_k", ge=1, le=100, description=_TOP_K)] = None,
) -> int:
    chosen = top_k_form if top_k_form is not None else top_k_query
    return 5 if chosen is None else chosen


TopKDep = Annotated[int, Depends(top_k_option)]


def _probe(engine: Engine, image: UploadFile, max_bytes: int, require_single_face: bool) -> FaceEmbedding:
    (result,) = engine.analyse([read_upload(image, "image", max_bytes)], require_single_face=require_single_face)
    return result


@router.post(
    "/identify",
    response_model=IdentifyResponse,
    dependencies=[Depends(require_multipart)],
    responses=gallery_responses(400, 401, 409, 413, 415, 422, 503, 500),
    summary="Who is this? The photo's main face searched against every subject of this gallery",
)
def identify(
    engine: EngineDep,
    settings: SettingsDep,
    gallery: GalleryDep,
    owner: OwnerDep,
    threshold: ThresholdDep,
    top_k: TopKDep,
    require_single_face: SingleFaceDep,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP photo")],
) -> IdentifyResponse:
    started = time.perf_counter()
    probe = _probe(engine, image, settings.max_upload_bytes, require_single_face)
    searching = time.perf_counter()
    matches = gallery.search(owner, probe.embedding, top_k)
    search_ms = (time.perf_counter() - searching) * 1000
    used = threshold.value  # threshold=, far= (a published operating point) or the default: options.py
    identified = bool(matches) and is_match(matches[0].similarity, used)
    return IdentifyResponse(
        identified=identified,
        subject=SubjectRef(id=matches[0].subject_id, name=matches[0].name) if identified else None,
        matches=[MatchOut.of(m) for m in matches],
        threshold=used,
        face=FaceOut.of(probe.face, probe.faces_detected),
        model=ModelRef.of(engine.card),
        search_ms=round(search_ms, 3),
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@router.post(
    "/subjects/{subject_id}/verify",
    response_model=SubjectVerifyResponse,
    dependencies=[Depends(require_multipart)],
    responses=gallery_responses(400, 401, 404, 409, 413, 415, 422, 503, 500),
    summary="Is the photo's main face this subject? (/verify against the subject's enrolled faces)",
)
def verify_subject(
    engine: EngineDep,
    settings: SettingsDep,
    gallery: GalleryDep,
    owner: OwnerDep,
    subject_id: str,
    threshold: ThresholdDep,
    require_single_face: SingleFaceDep,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP photo")],
) -> SubjectVerifyResponse:
    started = time.perf_counter()
    gallery.get_subject(owner, subject_id)  # 404 before the photo is analysed
    probe = _probe(engine, image, settings.max_upload_bytes, require_single_face)
    best, compared = gallery.compare(owner, subject_id, probe.embedding)
    used = threshold.value  # threshold=, far= (a published operating point) or the default: options.py
    return SubjectVerifyResponse(
        verified=is_match(best.similarity, used),
        similarity=round(best.similarity, 6),
        threshold=used,
        subject=SubjectRef(id=best.subject_id, name=best.name),
        face_id=best.face_id,
        faces_compared=compared,
        faces=[FaceOut.of(probe.face, probe.faces_detected)],
        model=ModelRef.of(engine.card),
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
