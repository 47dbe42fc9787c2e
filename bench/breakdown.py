"""Where the time of one ``/verify`` goes: the service's own engine, in this process, stage by stage.

The engine reports each pipeline stage (decode, detect, align, embed) to an observer, as it does for the
service's Prometheus metrics; here the observer adds them up per request. Calling ``Engine.analyse`` on the
two photos of a pair is exactly what ``POST /verify`` does after reading the upload, so the total here plus
HTTP and multipart handling is the service's latency. Engines of all targets are loaded first and then
visited in turn for every pair, so background load hits them alike.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.lfw import PhotoPair
from service.config import Settings
from service.engine import Engine, Upload
from service.errors import ServiceError

log = logging.getLogger(__name__)


class StageRecorder:
    """An engine observer that sums the seconds of each stage of the current request."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    def stage(self, name: str, seconds: float) -> None:
        self.current[name] += seconds

    def faces(self, count: int) -> None:
        pass


def _uploads(pair: PhotoPair) -> list[Upload]:
    return [
        Upload(field="image1", data=pair.data1, content_type="image/jpeg", filename=pair.first),
        Upload(field="image2", data=pair.data2, content_type="image/jpeg", filename=pair.second),
    ]


def _one(engine: Engine, recorder: StageRecorder, pair: PhotoPair) -> dict[str, float] | None:
    recorder.current.clear()
    started = time.perf_counter()
    try:
        engine.analyse(_uploads(pair), require_single_face=False)
    except ServiceError as exc:
        log.warning("breakdown: %s / %s failed: %s", pair.first, pair.second, exc)
        return None
    return {**recorder.current, "total": time.perf_counter() - started}


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    stages = list(dict.fromkeys(name for row in rows for name in row))
    total_mean = float(np.mean([row["total"] for row in rows]))
    summary: dict[str, Any] = {}
    for stage in stages:
        ms = np.asarray([row.get(stage, 0.0) for row in rows]) * 1000
        summary[stage] = {
            "median_ms": float(np.median(ms)),
            "mean_ms": float(ms.mean()),
            "share": float(ms.mean() / 1000 / total_mean) if total_mean else None,
        }
    return summary


def run(
    targets: dict[str, tuple[Path, str | None]], pairs: Sequence[PhotoPair], threads: int, requests: int
) -> dict[str, Any]:
    """Per target ``name -> (manifest, model)``: per-stage ms of one /verify (two photos), over ``requests`` pairs."""
    engines = {}
    for name, (manifest, model) in targets.items():
        recorder = StageRecorder()
        settings = Settings(manifest=manifest, model=model, threads=threads, log_level="WARNING")
        engines[name] = (Engine.load(settings, recorder), recorder)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    failures = dict.fromkeys(engines, 0)
    for index in range(requests + 2):  # the first two are warm-up
        pair = pairs[index % len(pairs)]
        for name, (engine, recorder) in engines.items():
            row = _one(engine, recorder, pair)
            if row is None:
                failures[name] += 1
            elif index >= 2:
                rows[name].append(row)
    return {
        name: {
            "threads": threads,
            "requests": len(rows[name]),
            "failures": failures[name],
            "model": engines[name][0].card.name,
            "stages": _summary(rows[name]) if rows[name] else {},
        }
        for name in engines
    }
