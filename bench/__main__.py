"""Benchmark the models and the service: ``python -m bench`` (run from the repository root).

Usage::

    python -m bench                    # everything (~2-3 min of model timing, then both services)
    python -m bench --quick            # smoke check: small counts, files get a -quick suffix, README untouched
    python -m bench --models-only      # model level only: ORT timings, size, MACs, detection, LFW columns
    python -m bench --skip-service     # all but the HTTP load test (the in-process /verify breakdown still runs)
    python -m bench --skip-photos      # all but the real-photo level
    python -m bench --repeats 60       # more interleaved timing rounds (still capped by --budget seconds)
    python -m bench --student runs/<run>/student.onnx   # also time extra student ONNX files (repeatable)
    python -m bench --identification   # the gallery level only (bench/gallery_bench.py): 1:N accuracy, search speed

What it measures:
  1. Model level, in ONNX Runtime in this process, 1 and 2 threads: T1 SFace, T2 dlib ResNet-29, their
     ensemble (T1 + T2 on the same face) and every student in models/manifest.json: parameters, ONNX
     bytes, MACs/FLOPs per face, ms/face at batch 1 and 32 (median, p90; all cases interleaved), YuNet
     ms per photo, compression and speed-up against the ensemble (flip-averaging students at their
     served cost of 2 passes per face).
  2. Service level: ``python -m service`` under uvicorn, FACE_THREADS=2, POST /verify with real LFW pairs
     at concurrency 1, 4, 8 and 16 (requests/s, p50/p95/p99, errors, peak RSS, server and client CPU per
     request), one server with the default student of models/manifest.json and one with the teacher
     ensemble, up together, each level's requests in bursts alternating between them; plus one /verify stage
     by stage.
  3. Real photos (bench/photos.py): /verify on ../shared/data/photos/master.csv interleaved with the LFW
     pairs, its stage breakdown, a flood of 16 clients with two ~40 MP JPEGs per request (peak RSS, RSS
     after, latency, status codes, /healthz), and LFW 10-fold through the service's own pipeline.
  4. LFW accuracy from runs/*/results.json and runs/*/teachers_lfw.json, matched by the ONNX sha256.

Writes bench/results/<date>-<machine>.json and .md, bench/results/accuracy_vs_speed.png, and the section
between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` of README.md when both markers exist.
The timings are only as good as the machine is quiet: run the full benchmark with nothing else running
(the report records the load average before and after).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench import accuracy, bars, breakdown, catalog, models, photos, service
from bench.lfw import load_pairs
from bench.machine import describe
from bench.output import Outputs, write_results
from service.manifest import load_manifest
from training.paths import CACHE, DATA, MODELS, REPO

log = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--models-only", action="store_true", help="model level only")
    mode.add_argument("--skip-service", action="store_true", help="no HTTP load test")
    mode.add_argument("--identification", action="store_true", help="the gallery level only (1:N identification)")
    parser.add_argument(
        "--celeba-identities",
        type=int,
        default=None,
        help="identification: score CelebA-test on this many identities only (default: all 998)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke check")
    parser.add_argument("--repeats", type=int, help="timing rounds (default 40, quick 2)")
    parser.add_argument("--budget", type=float, help="seconds of model timing at most (default 150, quick 20)")
    parser.add_argument("--requests", type=int, help="requests per concurrency level (default 200, quick 12)")
    parser.add_argument("--concurrency", default="1,4,8,16", help="comma-separated concurrency levels")
    parser.add_argument("--student", type=Path, action="append", default=[], help="extra student ONNX file")
    parser.add_argument("--headline", help="student the bars and the service use (default: the manifest's default)")
    parser.add_argument("--manifest", type=Path, default=MODELS / "manifest.json", help="student manifest")
    parser.add_argument("--teachers", type=Path, default=CACHE / "teachers" / "manifest.json", help="teacher manifest")
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="training runs (results.json)")
    parser.add_argument("--lfw", type=Path, default=DATA / "lfw", help="LFW folder (pairs.txt, images)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output folder")
    parser.add_argument("--no-readme", action="store_true", help="do not touch README.md")
    parser.add_argument("--ort-spinning", action="store_true", help="let ORT threads spin (the service does not)")
    parser.add_argument("--skip-photos", action="store_true", help="no real-photo level (bench/photos.py)")
    parser.add_argument("--photos", type=Path, default=DATA / "photos", help="real photos with master.csv")
    return parser.parse_args(argv)


def model_section(args: argparse.Namespace, lfw_jpeg: bytes) -> tuple[dict[str, Any], str | None]:
    teachers = catalog.teachers(args.teachers)
    students, default = catalog.students(args.manifest)
    extras = [catalog.extra_student(path) for path in args.student]
    headline = args.headline or default or (extras[0].name if extras else None)
    detector = catalog.detector([args.manifest, args.teachers])
    plan = models.TimingPlan(
        rounds=args.repeats or (2 if args.quick else 40),
        budget=args.budget or (20.0 if args.quick else 150.0),
        spinning=args.ort_spinning,
    )
    result = models.run([*teachers, *students, *extras], detector, lfw_jpeg, plan)
    result["accuracy_sources"] = accuracy.attach(result["models"], args.runs)
    return result, headline


def targets(args: argparse.Namespace, headline: str | None) -> dict[str, tuple[Path, str | None]]:
    """What the service section serves: the headline student, and the teacher ensemble."""
    found: dict[str, tuple[Path, str | None]] = {}
    if args.manifest.is_file():
        found["student"] = (args.manifest, headline)
    else:
        log.warning("no %s: the student service cannot be benchmarked", args.manifest)
    if args.teachers.is_file() and catalog.ENSEMBLE in load_manifest(args.teachers).models:
        found["ensemble"] = (args.teachers, catalog.ENSEMBLE)
    else:
        log.warning("%s has no %r model: the ensemble service cannot be benchmarked", args.teachers, catalog.ENSEMBLE)
    return found


def _photo_plan(quick: bool) -> photos.PhotoPlan:
    if quick:
        return photos.PhotoPlan(flood_requests=16, breakdown_pairs=10, lfw_pairs_per_fold=20)
    return photos.PhotoPlan()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.identification:
        from bench.gallery_main import main as identification_main

        return identification_main(args, argv)
    started, machine = time.perf_counter(), describe()
    pairs = load_pairs(args.lfw, 12 if args.quick else 100)
    log.info(
        "%d LFW pairs in memory; machine %s, load average %.2f", len(pairs), machine["slug"], machine["load_before"][0]
    )
    result: dict[str, Any] = {"machine": machine}
    result["models"], headline = model_section(args, pairs[0].data1)
    result["headline"] = headline
    if not args.models_only:
        serve = targets(args, headline)
        if not args.skip_service:
            plan = service.LoadPlan(
                concurrency=tuple(int(c) for c in args.concurrency.split(",")),
                requests=args.requests or (12 if args.quick else 200),
                level_deadline=60.0 if args.quick else 180.0,
            )
            result["service"] = service.run(serve, pairs, plan, args.out / "logs")
        result["breakdown"] = breakdown.run(serve, pairs, threads=2, requests=5 if args.quick else 50)
        if not args.skip_service and not args.skip_photos and "student" in serve:
            result["photos"] = photos.run(
                *serve["student"], pairs, args.photos, args.lfw, _photo_plan(args.quick), args.out / "logs"
            )
    result["bars"] = [
        bar.as_dict()
        for bar in bars.model_bars(result["models"]["models"], headline)
        + bars.service_bars(result.get("service"))
        + bars.photo_bars(result.get("photos"))
    ]
    result["run"] = {
        "date": date.today().isoformat(),
        "quick": args.quick,
        "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "seconds": time.perf_counter() - started,
    }
    machine["load_after"] = list(os.getloadavg())
    outputs = Outputs.for_run(args.out, machine["slug"], result["run"]["date"], args.quick)
    write_results(result, outputs, readme=None if args.no_readme or args.quick else REPO / "README.md")
    for bar in result["bars"]:
        log.info("%s  %s", bar["verdict"], bar["name"])
    return result


if __name__ == "__main__":
    main()
