"""Gallery search speed against gallery size, both backends, in process: latency, throughput, pgvector recall.

A gallery of N enrolled faces (one subject each) is made of real distractor embeddings (:mod:`bench.gallery_data`)
and written in bulk, as an import would (one transaction; PostgreSQL: ``COPY``, then the HNSW index is built
when the store opens). Then the store's own ``search`` (top 5 subjects) is timed one query at a time with real
probe embeddings (LFW faces, none of them in the gallery), and its answers are compared with exact search:
recall@k is the share of the exact top-k subjects that the backend returned.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.gallery.store import GalleryStore, ModelId

TOP_K = 5


def _rows(embeddings: NDArray[np.float32]) -> list[tuple[str, str]]:
    return [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(len(embeddings))]


def fill_sqlite(path: Path, model: ModelId, embeddings: NDArray[np.float32], create: Any) -> None:
    """Write ``embeddings`` as one-face subjects into the SQLite gallery at ``path`` (created by ``create``)."""
    create().close()  # the store makes the schema
    now, box = time.time(), json.dumps([0.0, 0.0, 100.0, 100.0])
    with sqlite3.connect(path) as db:
        ids = _rows(embeddings)
        db.executemany(
            "INSERT INTO subjects (id, owner, name, created_at) VALUES (?, '', ?, ?)",
            [(s, f"distractor {i}", now) for i, (s, _) in enumerate(ids)],
        )
        db.executemany(
            "INSERT INTO faces (id, subject_id, owner, model_name, model_version, model_sha256, embedding, box, "
            "score, faces_detected, created_at) VALUES (?, ?, '', ?, ?, ?, ?, ?, 0.9, 1, ?)",
            [
                (f, s, model.name, model.version, model.sha256, e.tobytes(), box, now)
                for (s, f), e in zip(ids, embeddings, strict=True)
            ],
        )


def fill_postgres(url: str, model: ModelId, embeddings: NDArray[np.float32], create: Any) -> None:
    """Same with ``COPY``; the HNSW index is dropped first, so that opening the store builds it in one go."""
    import psycopg
    from psycopg import sql

    from service.gallery.postgres import vector_text

    create().close()
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        index = f"gallery_faces_hnsw_{model.sha256[:16]}"
        conn.execute(f"DROP INDEX IF EXISTS {index}")
        (database,) = conn.execute("SELECT current_database()").fetchone()  # type: ignore[misc]
        conn.execute(sql.SQL("ALTER DATABASE {} SET maintenance_work_mem = '1GB'").format(sql.Identifier(database)))
        ids = _rows(embeddings)
        with conn.cursor() as cur:
            with cur.copy("COPY gallery_subjects (id, owner, name, created_at) FROM STDIN") as copy:
                for i, (s, _) in enumerate(ids):
                    copy.write_row((s, "", f"distractor {i}", now))
            with cur.copy(
                "COPY gallery_faces (id, subject_id, owner, model_name, model_version, model_sha256, "
                "embedding, box, score, faces_detected, created_at) FROM STDIN"
            ) as copy:
                for (s, f), e in zip(ids, embeddings, strict=True):
                    copy.write_row(
                        (
                            f,
                            s,
                            "",
                            model.name,
                            model.version,
                            model.sha256,
                            vector_text(e),
                            [0.0, 0.0, 100.0, 100.0],
                            0.9,
                            1,
                            now,
                        )
                    )
        conn.execute("ANALYZE")  # as autovacuum would soon: the planner then knows the gallery is large


def exact_top(gallery: NDArray[np.float32], probes: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    """Row indices of the exact top ``k`` per probe (one face per subject here, so rows are subjects)."""
    sims = probes @ gallery.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def time_searches(store: GalleryStore, probes: NDArray[np.float32], seconds: float) -> dict[str, Any]:
    """One query at a time (at most ``seconds``): latency percentiles, queries/s, and the answers."""
    for probe in probes[:5]:
        store.search("", probe, TOP_K)  # warm-up: caches, connections, plans
    latencies, answers = [], []
    deadline = time.perf_counter() + seconds
    for probe in probes:
        started = time.perf_counter()
        answers.append([m.name for m in store.search("", probe, TOP_K)])
        latencies.append((time.perf_counter() - started) * 1000)
        if time.perf_counter() > deadline:
            break
    p50, p95, p99 = (float(v) for v in np.percentile(latencies, [50, 95, 99]))
    return {
        "queries": len(latencies),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "qps": 1000 * len(latencies) / sum(latencies),
        "answers": answers,
    }


def recall(answers: Sequence[Sequence[str]], exact: NDArray[np.int64], k: int) -> float:
    """Share of the exact top-``k`` subjects (named ``distractor <row>``) among the backend's top ``k``."""
    found = [
        len({f"distractor {r}" for r in row[:k]} & set(answer[:k])) for row, answer in zip(exact, answers, strict=True)
    ]
    return float(sum(found) / (k * len(found)))


def throughput(store: GalleryStore, probes: NDArray[np.float32], clients: int, seconds: float) -> float:
    """Searches per second with ``clients`` threads searching at once, each for ``seconds``."""
    counts = [0] * clients

    def client(index: int) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            store.search("", probes[(index * 7919 + counts[index]) % len(probes)], TOP_K)
            counts[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return sum(counts) / (time.perf_counter() - started)
