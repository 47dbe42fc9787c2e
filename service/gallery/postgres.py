"""The shared gallery: PostgreSQL with pgvector, searched in the database, so any number of replicas agree.

One ``gallery_faces`` table holds the embeddings of every model (an untyped ``vector`` column); each served
model gets a partial HNSW index over its own rows, ``(embedding::vector(dim)) vector_ip_ops WHERE
model_sha256 = '<sha256>'``. Queries spell the same cast and predicate with the sha256 as a literal, so the
planner always matches the partial index (a bound parameter would not match it under a generic plan).
Embeddings are unit vectors: the inner product is the cosine similarity. pgvector >= 0.8's iterative index
scan (``hnsw.iterative_scan``) keeps scanning until enough rows pass the owner filter, so one key's gallery is
searched well even when other keys hold most of the rows.

Nothing is cached in the service: every read goes to the database (read committed), every write is a
transaction committed (fsync) before the service answers.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql
from psycopg_pool import ConnectionPool

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
    best_per_subject,
    mismatch_error,
)

_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS gallery_subjects (
    seq bigserial UNIQUE,
    id text PRIMARY KEY,
    owner text NOT NULL,
    name text NOT NULL,
    created_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS gallery_subjects_by_owner ON gallery_subjects (owner, seq);
CREATE TABLE IF NOT EXISTS gallery_faces (
    seq bigserial UNIQUE,
    id text PRIMARY KEY,
    subject_id text NOT NULL REFERENCES gallery_subjects (id) ON DELETE CASCADE,
    owner text NOT NULL,
    model_name text NOT NULL,
    model_version text NOT NULL,
    model_sha256 text NOT NULL,
    embedding vector NOT NULL,
    box real[] NOT NULL,
    score real NOT NULL,
    faces_detected integer NOT NULL,
    crop bytea,
    created_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS gallery_faces_by_subject ON gallery_faces (subject_id);
CREATE INDEX IF NOT EXISTS gallery_faces_by_owner_model ON gallery_faces (owner, model_sha256);
CREATE TABLE IF NOT EXISTS gallery_models (
    owner text NOT NULL,
    model_sha256 text NOT NULL,
    faces bigint NOT NULL,
    PRIMARY KEY (owner, model_sha256)
)
"""
# Faces per (owner, model), kept by a trigger on every write path (the service's, an import's COPY, psql), so
# that "does this gallery hold another model's faces?" is one look-up in a tiny table before each search.
_COUNT_FACES = """
CREATE OR REPLACE FUNCTION gallery_count_faces() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE gallery_models SET faces = faces - 1 WHERE owner = OLD.owner AND model_sha256 = OLD.model_sha256;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO gallery_models (owner, model_sha256, faces) VALUES (NEW.owner, NEW.model_sha256, 1)
        ON CONFLICT (owner, model_sha256) DO UPDATE SET faces = gallery_models.faces + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER gallery_faces_count AFTER INSERT OR DELETE OR UPDATE OF owner, model_sha256
    ON gallery_faces FOR EACH ROW EXECUTE FUNCTION gallery_count_faces()
"""
_FACE_COLUMNS = (
    "id, subject_id, model_name, model_version, model_sha256, box, score, faces_detected, created_at, crop IS NOT NULL"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PAGE = 256


def vector_text(vector: NDArray[np.float32]) -> str:
    """pgvector's text form, ``[x,y,...]`` (float32 values print exactly as the shortest float64 repr)."""
    return "[" + ",".join(map(str, np.asarray(vector, np.float32).tolist())) + "]"


class PostgresStore:
    """See the module docstring; implements :class:`service.gallery.store.GalleryStore`."""

    def __init__(
        self,
        url: str,
        model: ModelId,
        dim: int,
        *,
        ef_search: int = 100,
        pool_size: int = 8,
        open_timeout: float = 30.0,
    ) -> None:
        if not _SHA256.match(model.sha256):
            raise ValueError(f"model sha256 {model.sha256!r} is not 64 hex digits")
        self.model, self.dim = model, dim
        self._ef_search = ef_search
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            name="gallery",
        )
        try:
            self._pool.open(wait=True, timeout=open_timeout)
            self._create_schema()
        except (psycopg.Error, TimeoutError) as exc:
            self._pool.close()
            raise StoreUnavailable(f"cannot open the PostgreSQL gallery: {exc}") from exc
        self._vector = sql.SQL(f"embedding::vector({int(dim)})")
        self._served = sql.SQL("model_sha256 = {}").format(sql.Literal(model.sha256))

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        connection.execute(f"SET hnsw.ef_search = {int(self._ef_search)}")
        connection.execute("SET hnsw.iterative_scan = strict_order")

    def _create_schema(self) -> None:
        index = sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON gallery_faces USING hnsw ((embedding::vector({})) vector_ip_ops) "
            "WHERE model_sha256 = {}"
        ).format(
            sql.Identifier(f"gallery_faces_hnsw_{self.model.sha256[:16]}"),
            sql.Literal(self.dim),
            sql.Literal(self.model.sha256),
        )
        with self._pool.connection() as conn, conn.transaction():
            # Replicas starting together must not race on CREATE ... IF NOT EXISTS.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('mobileid face gallery schema'))")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            function, trigger = _COUNT_FACES.split("END $$;")
            conn.execute(function + "END $$")
            conn.execute(trigger)
            conn.execute(index)

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            raise StoreUnavailable(f"gallery database error: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _owned(conn: psycopg.Connection[Any], owner: str, subject_id: str, lock: bool = False) -> tuple[str, float]:
        query = "SELECT name, created_at FROM gallery_subjects WHERE id = %s AND owner = %s"
        row = conn.execute(query + (" FOR UPDATE" if lock else ""), (subject_id, owner)).fetchone()
        if row is None:
            raise SubjectNotFound(f"no subject {subject_id!r}")
        return str(row[0]), float(row[1])

    # --- subjects -----------------------------------------------------------------------------------------

    def create_subject(self, owner: str, name: str) -> Subject:
        subject = Subject(str(uuid.uuid4()), name, 0, time.time())
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO gallery_subjects (id, owner, name, created_at) VALUES (%s, %s, %s, %s)",
                (subject.id, owner, name, subject.created_at),
            )
        return subject

    def list_subjects(self, owner: str, limit: int, offset: int) -> tuple[list[Subject], int]:
        with self._transaction() as conn:
            (total,) = conn.execute("SELECT count(*) FROM gallery_subjects WHERE owner = %s", (owner,)).fetchone()  # type: ignore[misc]
            rows = conn.execute(
                "SELECT s.id, s.name, (SELECT count(*) FROM gallery_faces f WHERE f.subject_id = s.id), s.created_at "
                "FROM gallery_subjects s WHERE s.owner = %s ORDER BY s.seq LIMIT %s OFFSET %s",
                (owner, limit, offset),
            ).fetchall()
        return [Subject(str(i), str(n), int(c), float(t)) for i, n, c, t in rows], int(total)

    def get_subject(self, owner: str, subject_id: str) -> Subject:
        with self._transaction() as conn:
            name, created_at = self._owned(conn, owner, subject_id)
            (faces,) = conn.execute(
                "SELECT count(*) FROM gallery_faces WHERE subject_id = %s",  # type: ignore[misc]
                (subject_id,),
            ).fetchone()
        return Subject(subject_id, name, int(faces), created_at)

    def delete_subject(self, owner: str, subject_id: str) -> None:
        with self._transaction() as conn:
            self._owned(conn, owner, subject_id, lock=True)
            conn.execute("DELETE FROM gallery_subjects WHERE id = %s", (subject_id,))  # cascades to faces

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
        with self._transaction() as conn:
            self._owned(conn, owner, subject_id, lock=True)  # a concurrent delete of the subject waits, or we 404
            conn.execute(
                "INSERT INTO gallery_faces (id, subject_id, owner, model_name, model_version, model_sha256, "
                "embedding, box, score, faces_detected, crop, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s::vector, %s, %s, %s, %s, %s)",
                (
                    record.id,
                    subject_id,
                    owner,
                    self.model.name,
                    self.model.version,
                    self.model.sha256,
                    vector_text(face.embedding),
                    list(face.box),
                    face.score,
                    face.faces_detected,
                    face.crop,
                    record.created_at,
                ),
            )
        return record

    def list_faces(self, owner: str, subject_id: str) -> list[FaceRecord]:
        with self._transaction() as conn:
            self._owned(conn, owner, subject_id)
            rows = conn.execute(
                f"SELECT {_FACE_COLUMNS} FROM gallery_faces WHERE subject_id = %s ORDER BY seq", (subject_id,)
            ).fetchall()
        return [_face(row) for row in rows]

    def delete_face(self, owner: str, subject_id: str, face_id: str) -> None:
        with self._transaction() as conn:
            self._owned(conn, owner, subject_id)
            deleted = conn.execute("DELETE FROM gallery_faces WHERE id = %s AND subject_id = %s", (face_id, subject_id))
            if deleted.rowcount == 0:
                raise FaceNotFound(f"subject {subject_id!r} has no face {face_id!r}")

    # --- search -------------------------------------------------------------------------------------------

    def search(self, owner: str, query: NDArray[np.float32], top_k: int) -> list[Match]:
        vector = vector_text(query)
        nearest = sql.SQL(
            "SELECT f.subject_id, s.name, f.id, -({vec} <#> %(q)s::vector({dim})) FROM ("
            "SELECT subject_id, id, embedding FROM gallery_faces WHERE owner = %(owner)s AND {served} "
            "ORDER BY {vec} <#> %(q)s::vector({dim}) LIMIT %(take)s) f "
            "JOIN gallery_subjects s ON s.id = f.subject_id ORDER BY 4 DESC"
        ).format(vec=self._vector, dim=sql.Literal(self.dim), served=self._served)
        with self._transaction() as conn:
            self._refuse_foreign(conn, owner)
            take = 4 * top_k
            while True:
                rows = conn.execute(nearest, {"q": vector, "owner": owner, "take": take}).fetchall()
                found = best_per_subject([r[2] for r in rows], [r[0] for r in rows], [r[3] for r in rows], top_k)
                if len(found) == top_k or len(rows) < take:
                    break
                take *= 4
        names = {r[0]: r[1] for r in rows}
        return [Match(subject, names[subject], face, sim) for subject, face, sim in found]

    def _refuse_foreign(self, conn: psycopg.Connection[Any], owner: str) -> None:
        probe = "SELECT EXISTS (SELECT 1 FROM gallery_models WHERE owner = %s AND model_sha256 <> %s AND faces > 0)"
        row = conn.execute(probe, (owner, self.model.sha256)).fetchone()
        if row is not None and row[0]:
            raise mismatch_error(self.model, self._foreign(conn, owner))

    def compare(self, owner: str, subject_id: str, query: NDArray[np.float32]) -> tuple[Match, int]:
        with self._transaction() as conn:
            name, _ = self._owned(conn, owner, subject_id)
            foreign = self._foreign(conn, owner, subject_id)
            if foreign:
                raise mismatch_error(self.model, foreign)
            rows = conn.execute(
                sql.SQL(
                    "SELECT id, -({vec} <#> %s::vector({dim})) FROM gallery_faces WHERE subject_id = %s "
                    "AND {served} ORDER BY 2 DESC"
                ).format(vec=self._vector, dim=sql.Literal(self.dim), served=self._served),
                (vector_text(query), subject_id),
            ).fetchall()
        if not rows:
            raise NoEnrolledFaces(f"subject {subject_id!r} has no enrolled faces; POST /subjects/{{id}}/faces first")
        return Match(subject_id, name, str(rows[0][0]), float(rows[0][1])), len(rows)

    # --- model identity -----------------------------------------------------------------------------------

    def _foreign(
        self, conn: psycopg.Connection[Any], owner: str | None, subject_id: str | None = None
    ) -> list[ForeignModel]:
        where = (
            ["model_sha256 <> %(m)s"]
            + (["owner = %(o)s"] if owner is not None else [])
            + (["subject_id = %(s)s"] if subject_id is not None else [])
        )
        rows = conn.execute(
            "SELECT model_name, model_version, model_sha256, count(*), count(DISTINCT subject_id) FROM gallery_faces "
            f"WHERE {' AND '.join(where)} GROUP BY 1, 2, 3",
            {"m": self.model.sha256, "o": owner, "s": subject_id},
        ).fetchall()
        return [ForeignModel(ModelId(n, v, s), int(f), int(c)) for n, v, s, f, c in rows]

    def foreign_models(self, owner: str | None) -> list[ForeignModel]:
        with self._transaction() as conn:
            return self._foreign(conn, owner)

    def stale_faces(self) -> Iterator[StaleFace]:
        # A page at a time (crops are large); no transaction is held open while the caller works.
        after = 0
        while True:
            with self._transaction() as conn:
                rows = conn.execute(
                    "SELECT f.seq, f.id, f.owner, f.subject_id, s.name, f.model_name, f.model_version, f.model_sha256, "
                    "f.crop FROM gallery_faces f JOIN gallery_subjects s ON s.id = f.subject_id "
                    "WHERE f.model_sha256 <> %s AND f.seq > %s ORDER BY f.seq LIMIT %s",
                    (self.model.sha256, after, _PAGE),
                ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            for _, face_id, owner, subject_id, name, model_name, version, sha, crop in rows:
                model = ModelId(model_name, version, sha)
                yield StaleFace(face_id, owner, subject_id, name, model, None if crop is None else bytes(crop))

    def replace_embeddings(self, updates: Sequence[tuple[str, NDArray[np.float32]]]) -> None:
        with self._transaction() as conn:
            for face_id, embedding in updates:
                conn.execute(
                    "UPDATE gallery_faces SET model_name = %s, model_version = %s, model_sha256 = %s, "
                    "embedding = %s::vector WHERE id = %s",
                    (self.model.name, self.model.version, self.model.sha256, vector_text(embedding), face_id),
                )

    def close(self) -> None:
        self._pool.close()


def _face(row: Sequence[Any]) -> FaceRecord:
    face_id, subject_id, name, version, sha, box, score, detected, created_at, crop_stored = row
    x, y, w, h = (float(v) for v in box)
    return FaceRecord(
        str(face_id),
        str(subject_id),
        ModelId(name, version, sha),
        (x, y, w, h),
        float(score),
        int(detected),
        float(created_at),
        bool(crop_stored),
    )
