"""/subjects: enrol people (subjects) and their faces in the caller's gallery; list, read and delete them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile

from service.deps import EngineDep, SettingsDep, StateDep, read_upload, require_json, require_multipart
from service.detection import Face
from service.engine import Engine, Upload
from service.errors import NotReady
from service.gallery import owner_of
from service.gallery.crops import canonical_crop
from service.gallery.schemas import (
    EnrolledFace,
    FaceList,
    StoredFace,
    SubjectCreate,
    SubjectOut,
    SubjectPage,
    gallery_responses,
)
from service.gallery.store import GalleryStore, NewFace
from service.imaging import decode
from service.routes.options import SingleFaceDep
from service.schemas import FaceOut, ModelRef

router = APIRouter(tags=["gallery"])


async def get_gallery(state: StateDep) -> GalleryStore:
    if state.gallery is None:
        raise NotReady("the gallery is not open yet; retry shortly (GET /readyz turns 200 when ready)")
    return state.gallery


async def get_owner(request: Request, settings: SettingsDep) -> str:
    """The caller's gallery: its API key's (ApiKeyGuard has checked the key), or the shared one without keys."""
    return owner_of(request.headers.get("x-api-key") if settings.api_keys else None)


GalleryDep = Annotated[GalleryStore, Depends(get_gallery)]
OwnerDep = Annotated[str, Depends(get_owner)]
_ERRORS = (401, 404, 503, 500)


@router.post(
    "/subjects",
    status_code=201,
    response_model=SubjectOut,
    dependencies=[Depends(require_json)],
    responses=gallery_responses(401, 413, 415, 422, 503, 500),
    summary="Create a subject (a person)",
)
def create_subject(gallery: GalleryDep, owner: OwnerDep, body: SubjectCreate) -> SubjectOut:
    return SubjectOut.of(gallery.create_subject(owner, body.name))


@router.get(
    "/subjects",
    response_model=SubjectPage,
    responses=gallery_responses(401, 422, 503, 500),
    summary="List the subjects of this gallery, a page at a time, with the total",
)
def list_subjects(
    gallery: GalleryDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9, description="Subjects to skip")] = 0,
) -> SubjectPage:
    subjects, total = gallery.list_subjects(owner, limit, offset)
    return SubjectPage(subjects=[SubjectOut.of(s) for s in subjects], total=total, limit=limit, offset=offset)


@router.get(
    "/subjects/{subject_id}", response_model=SubjectOut, responses=gallery_responses(*_ERRORS), summary="One subject"
)
def get_subject(gallery: GalleryDep, owner: OwnerDep, subject_id: str) -> SubjectOut:
    return SubjectOut.of(gallery.get_subject(owner, subject_id))


@router.delete(
    "/subjects/{subject_id}",
    status_code=204,
    response_class=Response,
    responses=gallery_responses(*_ERRORS),
    summary="Delete a subject and all its faces",
)
def delete_subject(gallery: GalleryDep, owner: OwnerDep, subject_id: str) -> Response:
    gallery.delete_subject(owner, subject_id)
    return Response(status_code=204)


@router.post(
    "/subjects/{subject_id}/faces",
    status_code=201,
    response_model=EnrolledFace,
    dependencies=[Depends(require_multipart)],
    responses=gallery_responses(400, 401, 404, 413, 415, 422, 503, 500),
    summary="Enrol the main face of a photo (multipart `image`) for a subject",
)
def add_face(
    engine: EngineDep,
    settings: SettingsDep,
    gallery: GalleryDep,
    owner: OwnerDep,
    subject_id: str,
    require_single_face: SingleFaceDep,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP photo")],
) -> EnrolledFace:
    gallery.get_subject(owner, subject_id)  # 404 before the photo is analysed
    upload = read_upload(image, "image", settings.max_upload_bytes)
    (result,) = engine.analyse([upload], require_single_face=require_single_face)
    crop = _crop(engine, upload, result.face) if settings.gallery_keep_crops else None
    x, y, w, h = (float(v) for v in result.face.box)
    record = gallery.add_face(
        owner,
        subject_id,
        NewFace(result.embedding, (x, y, w, h), float(result.face.score), result.faces_detected, crop),
    )
    face = FaceOut.of(result.face, result.faces_detected)
    return EnrolledFace(face_id=record.id, subject_id=subject_id, model=ModelRef.of(engine.card), **face.model_dump())


def _crop(engine: Engine, upload: Upload, face: Face) -> bytes:
    """The canonical crop, from the photo decoded again (the engine drops each photo once it is embedded)."""
    decoded = decode(
        upload.data, max_bytes=engine.max_upload_bytes, max_pixels=engine.max_pixels, declared_type=upload.content_type
    )
    return canonical_crop(decoded.image, face)


@router.get(
    "/subjects/{subject_id}/faces",
    response_model=FaceList,
    responses=gallery_responses(*_ERRORS),
    summary="The faces enrolled for a subject (no embeddings, no photos)",
)
def list_faces(gallery: GalleryDep, owner: OwnerDep, subject_id: str) -> FaceList:
    faces = gallery.list_faces(owner, subject_id)
    return FaceList(subject_id=subject_id, faces=[StoredFace.of(f) for f in faces])


@router.delete(
    "/subjects/{subject_id}/faces/{face_id}",
    status_code=204,
    response_class=Response,
    responses=gallery_responses(*_ERRORS),
    summary="Delete one enrolled face",
)
def delete_face(gallery: GalleryDep, owner: OwnerDep, subject_id: str, face_id: str) -> Response:
    gallery.delete_face(owner, subject_id, face_id)
    return Response(status_code=204)
