"""``python -m bench --identification``: the gallery level of the benchmark (1:N identification).

1. Accuracy: open-set identification (:mod:`bench.identification`) on LFW and the CelebA test split, for the
   published default student and the teacher ensemble, both served the same way (the service's pipeline and
   exact search). The teacher ensemble is slow on 2 cores, so by default it is scored on LFW and on a seeded
   subset of CelebA-test identities (the student is scored on the same subset too, side by side).
2. Search speed against gallery size (:mod:`bench.gallery_speed`), 1k / 10k / 100k enrolled real faces, both
   backends, in process: latency, queries/s, recall against exact search, time to open (load or index build).
3. The real service (``python -m service``, 2 threads) on the 100k galleries: ``/identify`` of 250x250 LFW
   photos one at a time (latency percentiles and the search's share), then enrolment throughput.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import gallery_data, gallery_http, gallery_speed, identification
from service.config import Settings
from service.engine import Engine
from service.gallery import model_id
from service.gallery.postgres import PostgresStore
from service.gallery.sqlite import SQLiteStore

log = logging.getLogger(__name__)


def accuracy(models: dict[str, Settings], data: Path, more: Path, cache: Path, subset: int) -> list[dict[str, Any]]:
    rows = []
    for label, settings in models.items():
        engine = Engine.load(settings)
        sets = [("lfw", gallery_data.lfw(data))]
        if (more / "celeba_test").is_dir():
            sets.append(("celeba_test", gallery_data.celeba_test(data, more / "celeba_test", subset)))
            if label == "student" and subset is not None:
                sets.append(("celeba_test", gallery_data.celeba_test(data, more / "celeba_test")))
        else:
            log.warning("no %s: CelebA-test identification not scored", more / "celeba_test")
        for kind, faces in sets:
            embedded = gallery_data.embed_set(engine, faces, cache)
            openset = (identification.lfw_openset if kind == "lfw" else identification.celeba_openset)(embedded)
            result = identification.score(openset, engine.card.threshold)
            rows.append(
                {
                    "model": label,
                    "name": engine.card.name,
                    "embed_seconds": embedded.seconds,
                    "images_per_s": len(faces.files) / max(embedded.seconds, 1e-9),
                    **result,
                }
            )
            log.info(
                "%s %s: rank-1 %.4f, FNIR@FPIR=1e-2 %.4f",
                label,
                faces.name,
                result["rank1"],
                result["at_fpir"][0]["fnir"],
            )
    return rows


def _stores(folder: Path, pg_uri: Any, card: Any) -> dict[str, Any]:
    """``backend -> (make a fresh gallery: size -> (url, opener, filler))``."""
    model = model_id(card)

    def sqlite(size: int) -> tuple[str, Any, Any]:
        url = f"sqlite:///{folder / f'gallery-{size}.db'}"
        return url, lambda: SQLiteStore(url, model, card.dim), gallery_speed.fill_sqlite

    def postgres(size: int) -> tuple[str, Any, Any]:
        import psycopg

        with psycopg.connect(pg_uri(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE gallery_{size}")
        url = pg_uri(f"gallery_{size}")
        return url, lambda: PostgresStore(url, model, card.dim), gallery_speed.fill_postgres

    return {"sqlite": sqlite, **({"postgres": postgres} if pg_uri else {})}


def speed(
    card: Any, distractors: np.ndarray, probes: np.ndarray, sizes: list[int], folder: Path, pg_uri: Any, seconds: float
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows, largest = [], {}
    for backend, fresh in _stores(folder, pg_uri, card).items():
        for size in sizes:
            url, opener, fill = fresh(size)
            gallery = distractors[:size]
            started = time.perf_counter()
            fill(Path(url.removeprefix("sqlite:///")) if backend == "sqlite" else url, model_id(card), gallery, opener)
            filled = time.perf_counter() - started
            started = time.perf_counter()
            store = opener()
            opened = time.perf_counter() - started
            try:
                timed = gallery_speed.time_searches(store, probes, seconds)
                timed["qps_2_clients"] = gallery_speed.throughput(store, probes, 2, seconds / 4)
            finally:
                store.close()
            exact = gallery_speed.exact_top(gallery, probes[: timed["queries"]], gallery_speed.TOP_K)
            answers = timed.pop("answers")
            rows.append(
                {
                    "backend": backend,
                    "size": size,
                    "fill_s": filled,
                    "open_s": opened,
                    **timed,
                    "recall_at_1": gallery_speed.recall(answers, exact, 1),
                    "recall_at_5": gallery_speed.recall(answers, exact, gallery_speed.TOP_K),
                }
            )
            log.info(
                "%s %d: p95 %.2f ms, %.0f q/s, recall@5 %.4f, open %.1f s",
                backend,
                size,
                timed["p95_ms"],
                timed["qps"],
                rows[-1]["recall_at_5"],
                opened,
            )
            largest[backend] = url
    return rows, largest


def run(args: Any, data: Path, more: Path, cache: Path, student_manifest: Path, teachers: Path) -> dict[str, Any]:
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000]
    models = {"student": Settings(manifest=student_manifest, threads=2)}
    if teachers.is_file() and not args.quick:
        models["teacher ensemble"] = Settings(manifest=teachers, model="ensemble", threads=2)
    result: dict[str, Any] = {"load_before": list(os.getloadavg())}
    result["accuracy"] = accuracy(models, data, more, cache, 50 if args.quick else args.celeba_identities)
    engine = Engine.load(models["student"])
    pool = gallery_data.embed_set(engine, gallery_data.distractors(data, more, 110_000), cache)
    distractors = pool.embeddings[pool.ok]
    sizes = [size for size in sizes if size <= len(distractors)]
    lfw = gallery_data.embed_set(engine, gallery_data.lfw(data), cache)
    probes = lfw.embeddings[lfw.ok][np.random.default_rng(1).permutation(int(lfw.ok.sum()))][:2000]
    result["distractors"] = {
        "files": len(pool.set.files),
        "with_face": len(distractors),
        "sources": "UTKFace, CelebA-wild and CelebA-10k (the training pool), FairFace, CelebA-HQ",
    }
    with tempfile.TemporaryDirectory(prefix="bench-gallery-") as tmp:
        folder = Path(tmp)
        pg, pg_uri = _postgres(folder)
        try:
            result["speed"], largest = speed(
                engine.card, distractors, probes, sizes, folder, pg_uri, 5.0 if args.quick else 20.0
            )
            result["service"] = gallery_http.run(
                student_manifest, largest, data, folder, requests=20 if args.quick else 200
            )
        finally:
            if pg is not None:
                pg.cleanup()
    result["load_after"] = list(os.getloadavg())
    return result


def _postgres(folder: Path) -> tuple[Any, Any]:
    try:
        import pgserver
    except ImportError:
        log.warning("pgserver is not installed (dev extra): the PostgreSQL backend is not benchmarked")
        return None, None
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
    return server, server.get_uri
