"""The embedded gallery: one SQLite file (WAL, fsync on every commit) and exact search in memory.

The file is the truth; at open, the served model's embeddings are loaded into an :class:`ExactIndex`, and
every write commits to the file first and then updates the index, under one writer lock, so a search sees a
face only once it is durable. The index lives in this process, so the file must not be shared by several
service processes: an exclusive lock on ``<file>.lock`` makes a second one fail at start-up (use PostgreSQL
for several replicas).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from service.gallery.exact import ExactIndex
from service.gallery.store import (
    FaceNotFound,
    FaceRecord,
    ForeignModel,
    Match,
    ModelId,
    NewFace,
    NoEnrolledFaces,
    StaleFace,
    StoreUnavailable,
    Subject,
    SubjectNotFound,
    mismatch_error,
)

SCHEMA_VERSION = 1
_PAGE = 256
_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS subjects_by_owner ON subjects (owner);
CREATE TABLE IF NOT EXISTS faces (
    id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    embedding BLOB NOT NULL,
    box TEXT NOT NULL,
    score REAL NOT NULL,
    faces_detected INTEGER NOT NULL,
    crop BLOB,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_subject ON faces (subject_id);
CREATE INDEX IF NOT EXISTS faces_by_model ON faces (model_sha256, owner);
"""
_FACE_COLUMNS = (
    "id, subject_id, model_name, model_version, model_sha256, box, score, faces_detected, created_at, crop IS NOT NULL"
)


def _path_of(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` -> the file's path."""
    return Path(url.removeprefix("sqlite:///"))


class SQLiteStore:
    """See the module docstring; implements :class:`service.gallery.store.GalleryStore`."""

    def __init__(self, url: str, model: ModelId, dim: int) -> None:
        self.model = model
        self.path = _path_of(url)
        self._write = threading.Lock()
        self.index = ExactIndex(dim)
        self._names: dict[str, str] = {}
        self._foreign: dict[str, dict[str, ForeignModel]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = self._exclusive_lock(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open the gallery file {self.path}: {exc}") from exc
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._open_schema()
            self._load()
        except (sqlite3.Error, StoreUnavailable) as exc:
            self._lock_file.close()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"cannot open the gallery file {self.path}: {exc}") from exc

    @staticmethod
    def _exclusive_lock(path: Path) -> IO[str]:
        handle = open(f"{path}.lock", "a+")  # noqa: SIM115 - held open for the store's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreUnavailable(
                f"the gallery file {path} is in use by another process; the embedded gallery serves one process "
                "(set FACE_GALLERY_URL to a PostgreSQL database for several replicas)"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _open_schema(self) -> None:
        # WAL: readers never block the writer; synchronous=FULL: a commit is on disk before we answer 201.
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            self._db.execute(f"PRAGMA {pragma}")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise StoreUnavailable(f"{self.path} has gallery schema {version}; this service reads {SCHEMA_VERSION}")
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):  # executescript would commit first
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _load(self) -> None:
        """The served model's embeddings into the index; names and foreign-model counts into memory."""
        self._names = dict(self._db.execute("SELECT id, name FROM subjects"))
        rows = self._db.execute(
            "SELECT id, subject_id, owner, embedding FROM faces WHERE model_sha256 = ? ORDER BY rowid",
            (self.model.sha256,),
        )
        for face_id, subject_id, owner, blob in rows:
            self.index.add(owner, face_id, subject_id, np.frombuffer(blob, np.float32))
        owners = [
            row[0]
            for row in self._db.execute(
                "SELECT DISTINCT owner FROM faces WHERE model_sha256 <> ?", (self.model.sha256,)
            )
        ]
        for owner in owners:
            self._refresh_foreign(owner)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"gallery database error: {exc}") from exc

    def _refresh_foreign(self, owner: str) -> None:
        rows = self._db.execute(
            "SELECT model_name, model_version, model_sha256, count(*), count(DISTINCT subject_id) FROM faces "
            "WHERE owner = ? AND model_sha256 <> ? GROUP BY model_name, model_version, model_sha256",
            (owner, self.model.sha256),
        ).fetchall()
        found = {
            sha: ForeignModel(ModelId(name, version, sha), faces, subjects)
            for name, version, sha, faces, subjects in rows
        }
        if found:
            self._foreign[owner] = found
        else:
            self._foreign.pop(owner, None)

    def _owned(self, owner: str, subject_id: str) -> tuple[str, float]:
        row = self._db.execute(
            "SELECT name, created_at FROM subjects WHERE id = ? AND owner = ?", (subject_id, owner)
        ).fetchone()
        if row is None:
            raise SubjectNotFound(f"no subject {subject_id!r}")
        return str(row[0]), float(row[1])

    # --- subjects -----------------------------------------------------------------------------------------

    def create_subject(self, owner: str, name: str) -> Subject:
        subject = Subject(str(uuid.uuid4()), name, 0, time.time())
        with self._write:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO subjects (id, owner, name, created_at) VALUES (?, ?, ?, ?)",
                    (subject.id, owner, name, subject.created_at),
                )
            self._names[subject.id] = name
        return subject

    def list_subjects(self, owner: str, limit: int, offset: int) -> tuple[list[Subject], int]:
        with self._write:
            total = self._db.execute("SELECT count(*) FROM subjects WHERE owner = ?", (owner,)).fetchone()[0]
            rows = self._db.execute(
                "SELECT s.id, s.name, (SELECT count(*) FROM faces f WHERE f.subject_id = s.id), s.created_at "
                "FROM subjects s WHERE s.owner = ? ORDER BY s.rowid LIMIT ? OFFSET ?",
                (owner, limit, offset),
            ).fetchall()
        return [Subject(*row) for row in rows], int(total)

    def get_subject(self, owner: str, subject_id: str) -> Subject:
        with self._write:
            name, created_at = self._owned(owner, subject_id)
            faces = self._db.execute("SELECT count(*) FROM faces WHERE subject_id = ?", (subject_id,)).fetchone()[0]
        return Subject(subject_id, name, int(faces), created_at)

    def delete_subject(self, owner: str, subject_id: str) -> None:
        with self._write:
            with self._transaction():
                self._owned(owner, subject_id)
                faces = [row[0] for row in self._db.execute("SELECT id FROM faces WHERE subject_id = ?", (subject_id,))]
                self._db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))  # cascades to faces
            self.index.remove(owner, faces)
            self._names.pop(subject_id, None)
            if owner in self._foreign:
                self._refresh_foreign(owner)

    # --- faces --------------------------------------------------------------------------------------------

    def add_face(self, owner: str, subject_id: str, face: NewFace) -> FaceRecord:
        record = FaceRecord(
            str(uuid.uuid4()),
            subject_id,
            self.model,
            face.box,
            face.score,
            face.faces_detected,
            time.time(),
            face.crop is not None,
        )
        embedding = np.ascontiguousarray(face.embedding, dtype=np.float32)
        with self._write:
            with self._transaction():
                self._owned(owner, subject_id)
                self._db.execute(
                    "INSERT INTO faces (id, subject_id, model_name, model_version, model_sha256, box, score, "
                    "faces_detected, created_at, owner, embedding, crop) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        subject_id,
                        self.model.name,
                        self.model.version,
                        self.model.sha256,
                        json.dumps(list(face.box)),
                        face.score,
                        face.faces_detected,
                        record.created_at,
                        owner,
                        embedding.tobytes(),
                        face.crop,
                    ),
                )
            self.index.add(owner, record.id, subject_id, embedding)
        return record

    def list_faces(self, owner: str, subject_id: str) -> list[FaceRecord]:
        with self._write:
            self._owned(owner, subject_id)
            rows = self._db.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE subject_id = ? ORDER BY rowid", (subject_id,)
            ).fetchall()
        return [_face(row) for row in rows]

    def delete_face(self, owner: str, subject_id: str, face_id: str) -> None:
        with self._write:
            with self._transaction():
                self._owned(owner, subject_id)
                deleted = self._db.execute("DELETE FROM faces WHERE id = ? AND subject_id = ?", (face_id, subject_id))
                if deleted.rowcount == 0:
                    raise FaceNotFound(f"subject {subject_id!r} has no face {face_id!r}")
            self.index.remove(owner, [face_id])
            if owner in self._foreign:
                self._refresh_foreign(owner)

    # --- search -------------------------------------------------------------------------------------------

    def search(self, owner: str, query: NDArray[np.float32], top_k: int) -> list[Match]:
        foreign = self._foreign.get(owner)
        if foreign:
            raise mismatch_error(self.model, list(foreign.values()))
        found = self.index.search(owner, query, top_k)
        names = self._names
        return [Match(subject, names[subject], face, sim) for subject, face, sim in found if subject in names]

    def compare(self, owner: str, subject_id: str, query: NDArray[np.float32]) -> tuple[Match, int]:
        with self._write:
            name, _ = self._owned(owner, subject_id)
            faces = self._db.execute(
                "SELECT id, model_name, model_version, model_sha256 FROM faces WHERE subject_id = ?", (subject_id,)
            ).fetchall()
        foreign = [ModelId(n, v, s) for _, n, v, s in faces if s != self.model.sha256]
        if foreign:
            counts = {m: foreign.count(m) for m in foreign}
            raise mismatch_error(self.model, [ForeignModel(m, c, 1) for m, c in counts.items()])
        best = self.index.compare(owner, [row[0] for row in faces], query)
        if best is None:
            raise NoEnrolledFaces(f"subject {subject_id!r} has no enrolled faces; POST /subjects/{{id}}/faces first")
        return Match(subject_id, name, best[0], best[1]), len(faces)

    # --- model identity -----------------------------------------------------------------------------------

    def foreign_models(self, owner: str | None) -> list[ForeignModel]:
        with self._write:
            if owner is not None:
                return list(self._foreign.get(owner, {}).values())
            merged: dict[str, list[ForeignModel]] = {}
            for per_owner in self._foreign.values():
                for sha, foreign in per_owner.items():
                    merged.setdefault(sha, []).append(foreign)
        return [
            ForeignModel(group[0].model, sum(f.faces for f in group), sum(f.subjects for f in group))
            for group in merged.values()
        ]

    def stale_faces(self) -> Iterator[StaleFace]:
        # A page at a time (crops are large), the lock released between pages; rowids do not change on update.
        after = 0
        while True:
            with self._write:
                rows = self._db.execute(
                    "SELECT f.rowid, f.id, f.owner, f.subject_id, s.name, f.model_name, f.model_version, "
                    "f.model_sha256, f.crop FROM faces f JOIN subjects s ON s.id = f.subject_id "
                    "WHERE f.model_sha256 <> ? AND f.rowid > ? ORDER BY f.rowid LIMIT ?",
                    (self.model.sha256, after, _PAGE),
                ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            for _, face_id, owner, subject_id, name, model_name, version, sha, crop in rows:
                yield StaleFace(face_id, owner, subject_id, name, ModelId(model_name, version, sha), crop)

    def replace_embeddings(self, updates: Sequence[tuple[str, NDArray[np.float32]]]) -> None:
        with self._write:
            owners: dict[str, tuple[str, str, NDArray[np.float32]]] = {}
            with self._transaction():
                for face_id, embedding in updates:
                    self._db.execute(
                        "UPDATE faces SET model_name = ?, model_version = ?, model_sha256 = ?, embedding = ? "
                        "WHERE id = ?",
                        (
                            self.model.name,
                            self.model.version,
                            self.model.sha256,
                            np.ascontiguousarray(embedding, dtype=np.float32).tobytes(),
                            face_id,
                        ),
                    )
                    owner, subject = self._db.execute(
                        "SELECT owner, subject_id FROM faces WHERE id = ?", (face_id,)
                    ).fetchone()
                    owners[face_id] = (owner, subject, embedding)
            for face_id, (owner, subject, embedding) in owners.items():
                self.index.add(owner, face_id, subject, embedding)
            for owner in {owner for owner, _, _ in owners.values()}:
                self._refresh_foreign(owner)

    def close(self) -> None:
        with self._write:
            self._db.close()
            self._lock_file.close()


def _face(row: Sequence[Any]) -> FaceRecord:
    face_id, subject_id, name, version, sha, box, score, detected, created_at, crop_stored = row
    x, y, w, h = json.loads(str(box))
    return FaceRecord(
        str(face_id),
        str(subject_id),
        ModelId(str(name), str(version), str(sha)),
        (float(x), float(y), float(w), float(h)),
        float(score),
        int(detected),
        float(created_at),
        bool(crop_stored),
    )
