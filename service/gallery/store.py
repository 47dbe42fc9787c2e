"""The gallery's records and the one interface both backends implement (:class:`GalleryStore`).

A gallery belongs to an *owner*: with API keys configured, a hash of the caller's key, so that each key sees
only its own subjects; without keys, everyone shares the owner ``""``. Every stored embedding records the
model that made it (:class:`ModelId`); a store searches only embeddings of the model the service serves and
refuses to answer (:class:`ModelMismatch`) while the owner's gallery still holds faces of another model,
since a search that silently skipped them would miss enrolled people.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from service.errors import GalleryConflict, GalleryUnavailable, NotFound


class SubjectNotFound(NotFound):
    """No subject with this id in the caller's gallery (another key's subjects are not found either)."""


class FaceNotFound(NotFound):
    """No face with this id on this subject."""


class ModelMismatch(GalleryConflict):
    """The caller's gallery holds embeddings of a model other than the one served."""

    code = "gallery_model_mismatch"


class NoEnrolledFaces(GalleryConflict):
    """A subject with no faces cannot be verified against."""

    code = "no_enrolled_faces"


class StoreUnavailable(GalleryUnavailable):
    """The database cannot be reached or refused the operation."""


@dataclass(frozen=True)
class ModelId:
    """Which model made an embedding; ``sha256`` is the identity, name and version are for people."""

    name: str
    version: str
    sha256: str

    def describe(self) -> str:
        return f"{self.name} (version {self.version}, sha256 {self.sha256[:12]}...)"


@dataclass(frozen=True)
class Subject:
    id: str
    name: str
    faces: int
    created_at: float
    """Unix time."""


@dataclass(frozen=True)
class FaceRecord:
    id: str
    subject_id: str
    model: ModelId
    box: tuple[float, float, float, float]
    score: float
    faces_detected: int
    created_at: float
    crop_stored: bool


@dataclass(frozen=True)
class NewFace:
    """A face to enrol: its unit embedding ``(dim,)`` and, when the operator keeps them, its aligned crop."""

    embedding: NDArray[np.float32]
    box: tuple[float, float, float, float]
    score: float
    faces_detected: int
    crop: bytes | None = None
    """PNG of the face on the canonical crop (:mod:`service.gallery.crops`), for re-embedding."""


@dataclass(frozen=True)
class Match:
    """A subject's best-matching enrolled face."""

    subject_id: str
    name: str
    face_id: str
    similarity: float


@dataclass(frozen=True)
class ForeignModel:
    """Faces of one other model in a gallery."""

    model: ModelId
    faces: int
    subjects: int


@dataclass(frozen=True)
class StaleFace:
    """A face of another model, as the re-embedding command sees it."""

    id: str
    owner: str
    subject_id: str
    subject_name: str
    model: ModelId
    crop: bytes | None


class GalleryStore(Protocol):
    """Subjects, their faces and search, for one served model. Thread-safe; every write is durable on return."""

    model: ModelId

    def create_subject(self, owner: str, name: str) -> Subject: ...

    def list_subjects(self, owner: str, limit: int, offset: int) -> tuple[list[Subject], int]:
        """A page of subjects (oldest first) and the total count."""
        ...

    def get_subject(self, owner: str, subject_id: str) -> Subject: ...

    def delete_subject(self, owner: str, subject_id: str) -> None:
        """Delete the subject and all its faces."""
        ...

    def add_face(self, owner: str, subject_id: str, face: NewFace) -> FaceRecord: ...

    def list_faces(self, owner: str, subject_id: str) -> list[FaceRecord]: ...

    def delete_face(self, owner: str, subject_id: str, face_id: str) -> None: ...

    def search(self, owner: str, query: NDArray[np.float32], top_k: int) -> list[Match]:
        """The ``top_k`` subjects most similar to a unit ``(dim,)`` query, best first (one match per subject).

        Raises:
            ModelMismatch: the owner's gallery holds faces of another model.
        """
        ...

    def compare(self, owner: str, subject_id: str, query: NDArray[np.float32]) -> tuple[Match, int]:
        """The subject's best face for the query, and how many faces were compared.

        Raises:
            SubjectNotFound, NoEnrolledFaces, ModelMismatch.
        """
        ...

    def foreign_models(self, owner: str | None) -> list[ForeignModel]:
        """Faces of models other than :attr:`model`, in one owner's gallery (``None``: in all of them)."""
        ...

    def stale_faces(self) -> Iterator[StaleFace]:
        """Every face of another model, in all galleries (for re-embedding)."""
        ...

    def replace_embeddings(self, updates: Sequence[tuple[str, NDArray[np.float32]]]) -> None:
        """Give faces new embeddings of :attr:`model` (re-embedding), in one transaction."""
        ...

    def close(self) -> None: ...


def mismatch_error(served: ModelId, foreign: Sequence[ForeignModel]) -> ModelMismatch:
    """The typed error for a gallery that still has faces of other models, saying which and what to do."""
    parts = [f"{f.faces} face(s) of {f.subjects} subject(s) enrolled with {f.model.describe()}" for f in foreign]
    return ModelMismatch(
        f"this gallery has {'; '.join(parts)}, but the service serves {served.describe()}: embeddings of different "
        "models cannot be compared. Re-embed the gallery with `python -m service.gallery reembed` (needs crops "
        "kept at enrolment, FACE_GALLERY_KEEP_CROPS) or delete and re-enrol those faces."
    )


def best_per_subject(
    face_ids: Sequence[str], subject_ids: Sequence[str], similarities: Sequence[float], top_k: int
) -> list[tuple[str, str, float]]:
    """``(subject_id, face_id, similarity)`` of the first ``top_k`` distinct subjects of a best-first face list."""
    seen: set[str] = set()
    best: list[tuple[str, str, float]] = []
    for face_id, subject_id, similarity in zip(face_ids, subject_ids, similarities, strict=True):
        if subject_id not in seen:
            seen.add(subject_id)
            best.append((subject_id, face_id, float(similarity)))
            if len(best) == top_k:
                break
    return best
