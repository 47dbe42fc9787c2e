"""Request and response bodies of the gallery routes (/subjects, /identify), and their documented errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.gallery.store import FaceRecord, Match, Subject
from service.schemas import ErrorResponse, FaceOut, ModelRef, error_responses

_GALLERY_ERRORS = {
    404: "not_found: no such subject or face in this API key's gallery",
    409: "gallery_model_mismatch: the gallery holds faces enrolled with another model (the message says which and "
    "how to re-embed); no_enrolled_faces: the subject has no face to compare with",
    503: "not_ready: the models are not loaded yet; gallery_unavailable: the gallery database cannot be reached",
}


def gallery_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """:func:`service.schemas.error_responses` plus the gallery's own statuses and codes."""
    standard = error_responses(*[s for s in statuses if s not in _GALLERY_ERRORS])
    ours: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse, "description": _GALLERY_ERRORS[s]} for s in statuses if s in _GALLERY_ERRORS
    }
    return {**standard, **ours}


class SubjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=256, description="Display name (need not be unique)")


class SubjectRef(BaseModel):
    id: str
    name: str


class SubjectOut(SubjectRef):
    faces: int = Field(description="Enrolled faces")
    created_at: float = Field(description="Unix time")

    @classmethod
    def of(cls, subject: Subject) -> SubjectOut:
        return cls(id=subject.id, name=subject.name, faces=subject.faces, created_at=round(subject.created_at, 3))


class SubjectPage(BaseModel):
    subjects: list[SubjectOut] = Field(description="Oldest first")
    total: int = Field(description="Subjects in this gallery")
    limit: int
    offset: int


class EnrolledFace(FaceOut):
    """The face just enrolled: the main face of the photo, as /verify reports it."""

    face_id: str
    subject_id: str
    model: ModelRef


class StoredFace(BaseModel):
    face_id: str
    box: list[float]
    score: float
    faces_detected: int
    model: ModelRef = Field(description="The model that made this face's embedding")
    crop_stored: bool = Field(description="Its aligned crop is kept (FACE_GALLERY_KEEP_CROPS): it can be re-embedded")
    created_at: float

    @classmethod
    def of(cls, face: FaceRecord) -> StoredFace:
        model = ModelRef(name=face.model.name, version=face.model.version, sha256=face.model.sha256)
        return cls(
            face_id=face.id,
            box=list(face.box),
            score=face.score,
            faces_detected=face.faces_detected,
            model=model,
            crop_stored=face.crop_stored,
            created_at=round(face.created_at, 3),
        )


class FaceList(BaseModel):
    subject_id: str
    faces: list[StoredFace]


class MatchOut(BaseModel):
    subject: SubjectRef
    similarity: float = Field(description="Cosine similarity of the probe to the subject's best-matching face")
    face_id: str = Field(description="That enrolled face")

    @classmethod
    def of(cls, match: Match) -> MatchOut:
        return cls(
            subject=SubjectRef(id=match.subject_id, name=match.name),
            similarity=round(match.similarity, 6),
            face_id=match.face_id,
        )


class IdentifyResponse(BaseModel):
    identified: bool = Field(description="The best match's similarity >= threshold")
    subject: SubjectRef | None = Field(description="The best match when identified, else null")
    matches: list[MatchOut] = Field(description="Up to top_k subjects, most similar first, whatever the threshold")
    threshold: float
    face: FaceOut = Field(description="The probe photo's main face")
    model: ModelRef
    search_ms: float = Field(description="The gallery search's share of took_ms")
    took_ms: float


class SubjectVerifyResponse(BaseModel):
    verified: bool = Field(description="similarity >= threshold")
    similarity: float = Field(description="Best cosine similarity of the photo's main face to the subject's faces")
    threshold: float
    subject: SubjectRef
    face_id: str = Field(description="The subject's best-matching enrolled face")
    faces_compared: int
    faces: list[FaceOut] = Field(description="The main face of the photo (as /verify's faces)")
    model: ModelRef
    took_ms: float
