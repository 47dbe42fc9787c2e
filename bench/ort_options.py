"""ONNX Runtime session options by measurement: ``python -m bench.ort_options``.

Times the two graphs every request runs, YuNet on a 640x448 input (a downscaled photo) and the default
student on a /verify batch, under each combination of intra-op threads (1, 2), spinning (on, off) and graph
optimisation level (basic, extended, all), with 1 caller and with 2 concurrent callers (two requests at
once, as under load). Cases are interleaved round by round (:mod:`bench.timing`), so background load hits
them alike. Writes ``bench/results/ort-options-<date>-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.machine import describe
from service.manifest import load_manifest, resolve_file
from training.paths import MODELS, REPO

log = logging.getLogger("bench.ort_options")

LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _options(threads: int, spinning: bool, level: str) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = LEVELS[level]
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def _graphs(manifest: Path) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    spec = load_manifest(manifest)
    detector = resolve_file(manifest, spec.detector.file, spec.detector.sha256)
    student = spec.models[spec.default_model].components[0]
    batch = 4 if student.flip_average else 2
    return {
        "yunet 640x448": (
            detector,
            {spec.detector.input_name: np.random.default_rng(0).uniform(0, 255, (1, 3, 448, 640)).astype(np.float32)},
        ),
        f"student batch {batch}": (
            resolve_file(manifest, student.file, student.sha256),
            {student.input.name: np.full((batch, 3, student.input.height, student.input.width), 0.5, np.float32)},
        ),
    }


def _time(session: ort.InferenceSession, feed: dict[str, np.ndarray], callers: int, seconds: float) -> list[float]:
    """Per-call wall seconds with ``callers`` threads calling ``run`` back to back for ``seconds``."""
    samples: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def call() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            session.run(None, feed)
            with lock:
                samples.append(time.perf_counter() - started)

    workers = [threading.Thread(target=call) for _ in range(callers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.ort_options", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slot", type=float, default=0.4, help="seconds per case per round")
    parser.add_argument("--manifest", type=Path, default=MODELS / "manifest.json")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    machine = describe()
    cases = []
    for graph, (path, feed) in _graphs(args.manifest).items():
        for threads, spinning, level in itertools.product((1, 2), (False, True), LEVELS):
            session = ort.InferenceSession(
                str(path), _options(threads, spinning, level), providers=["CPUExecutionProvider"]
            )
            session.run(None, feed)
            cases.append(((graph, threads, spinning, level), session, feed))
    samples: dict[tuple[Any, ...], dict[int, list[float]]] = {key: {1: [], 2: []} for key, _, _ in cases}
    for round_ in range(args.rounds):
        shift = round_ % len(cases)
        for key, session, feed in cases[shift:] + cases[:shift]:
            for callers in (1, 2):
                samples[key][callers] += _time(session, feed, callers, args.slot)
        log.info("round %d/%d", round_ + 1, args.rounds)
    rows = [
        {
            "graph": key[0],
            "threads": key[1],
            "spinning": key[2],
            "optimisation": key[3],
            **{f"callers_{c}_median_ms": float(np.median(v) * 1000) for c, v in by.items()},
            **{f"callers_{c}_per_s": len(v) / (args.rounds * args.slot) for c, v in by.items()},
        }
        for key, by in samples.items()
    ]
    result = {"date": date.today().isoformat(), "machine": machine, "load_after": os.getloadavg()[0], "rows": rows}
    stem = args.out / f"ort-options-{result['date']}-{machine['slug']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# ONNX Runtime session options ({result['date']}, {machine['slug']})",
        "",
        f"Load average {machine['load_before'][0]:.2f} before, {result['load_after']:.2f} after. Median ms per "
        "call with 1 caller, and with 2 concurrent callers (and their calls/s together).",
        "",
        "| graph | threads | spinning | optimisation | 1 caller ms | 2 callers ms | 2 callers calls/s |",
        "|---|--:|---|---|--:|--:|--:|",
    ]
    lines += [
        f"| {r['graph']} | {r['threads']} | {'on' if r['spinning'] else 'off'} | {r['optimisation']} | "
        f"{r['callers_1_median_ms']:.2f} | {r['callers_2_median_ms']:.2f} | {r['callers_2_per_s']:.0f} |"
        for r in rows
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
