"""Detector input size vs face recall and time: ``python -m bench.detector_size``.

For each candidate ``max_side`` (the long side YuNet sees; photos are decoded at the cheapest integer
reduction that keeps at least that much, as the service does), on the real photos of
``../shared/data/photos``, LFW (deep-funneled) and the training pool (CelebA, CelebA-wild, UTKFace):

* images with at least one face (LFW and the pool have one face each: this is their recall);
* on the real photos, recall of the faces found at the largest size (box IoU >= 0.5) and whether the main
  face is the same one;
* median CPU ms per image of decode + detection (the two stages the size changes), with one ORT thread so
  that all of it is this thread's CPU time, which a busy machine inflates far less than wall time.

Writes ``bench/results/detector-size-<date>-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import describe
from service.config import Settings
from service.detection import DetectorConfig, Face, FaceDetector, main_face_index
from service.imaging import open_image
from service.manifest import load_manifest
from service.sessions import SessionPool, load_detector, session_options
from training.paths import DATA, MODELS, REPO

log = logging.getLogger("bench.detector_size")

SIZES = (160, 240, 320, 480, 640, 960)
LIMITS = {"max_bytes": 64 * 1024 * 1024, "max_pixels": 100_000_000}


def _files(args: argparse.Namespace) -> dict[str, list[Path]]:
    rng = np.random.default_rng(0)

    def sample(paths: list[Path], count: int) -> list[Path]:
        paths = sorted(paths)
        if count >= len(paths):
            return paths
        return [paths[i] for i in sorted(rng.choice(len(paths), count, replace=False))]

    pool = DATA / "pool"
    return {
        "photos": sorted((DATA / "photos").glob("*.jpg")),
        "lfw": sample(list((DATA / "lfw" / "images_deepfunneled").glob("*/*.jpg")), args.lfw),
        "celeba": sample(list((DATA / "celeba" / "img_align_celeba_89x109").glob("*.jpg")), args.pool),
        "celeba_wild": sample(list((pool / "celeba_wild_128").glob("*.jpg")), args.pool),
        "utkface": sample(list((pool / "utkface_128").glob("*.jpg")), args.pool),
    }


def _detectors(manifest: Path, threads: int) -> dict[int, FaceDetector]:
    spec = load_manifest(manifest).detector
    base = load_detector(SessionPool(manifest, session_options(threads, False)), spec)
    return {
        size: FaceDetector(
            base.session,
            DetectorConfig(
                max_side=size,
                min_side=min(spec.min_side, size),
                score_threshold=spec.score_threshold,
                nms_threshold=spec.nms_threshold,
            ),
        )
        for size in SIZES
    }


def _detect(detector: FaceDetector, data: bytes) -> tuple[list[Face], float, tuple[int, int]]:
    """Faces in full-resolution coordinates, CPU seconds of decode + detect (this thread's: with one ORT thread
    the network runs on it too, so other processes' load barely moves the figure), full size."""
    started = time.thread_time()
    decoded = open_image(
        data, min_side=detector.config.max_side, max_bytes=LIMITS["max_bytes"], max_pixels=LIMITS["max_pixels"]
    ).decode()
    faces = detector.detect(decoded.image)
    took = time.thread_time() - started
    full = [
        Face(
            np.concatenate([decoded.to_full(f.box[:2]), f.box[2:] * decoded.factor]),
            f.score,
            decoded.to_full(f.landmarks),
        )
        for f in faces
    ]
    return full, took, decoded.full_size


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9))


def _dataset(name: str, files: list[Path], detectors: dict[int, FaceDetector]) -> dict[str, Any]:
    found = {size: 0 for size in SIZES}
    times: dict[int, list[float]] = {size: [] for size in SIZES}
    matched, reference_faces, same_main = dict.fromkeys(SIZES, 0), 0, dict.fromkeys(SIZES, 0)
    largest = max(SIZES)
    for index, path in enumerate(files):
        data = path.read_bytes()
        order = SIZES[index % len(SIZES) :] + SIZES[: index % len(SIZES)]  # rotate: load hits every size alike
        results = {size: _detect(detectors[size], data) for size in order}
        reference, _, (width, height) = results[largest]
        reference_faces += len(reference)
        ref_main = reference[main_face_index(reference, height, width)] if reference else None
        for size, (faces, took, _) in results.items():
            times[size].append(took)
            found[size] += bool(faces)
            matched[size] += sum(any(_iou(r.box, f.box) >= 0.5 for f in faces) for r in reference)
            if ref_main is not None and faces:
                main = faces[main_face_index(faces, height, width)]
                same_main[size] += _iou(main.box, ref_main.box) >= 0.5
    log.info("%s: %d images done", name, len(files))
    return {
        "images": len(files),
        "sizes": {
            str(size): {
                "with_face": found[size],
                "without_face": len(files) - found[size],
                "recall_vs_largest": matched[size] / reference_faces if reference_faces else None,
                "same_main_face": same_main[size],
                "median_ms": float(np.median(times[size]) * 1000),
                "mean_ms": float(np.mean(times[size]) * 1000),
            }
            for size in SIZES
        },
        "reference_faces": reference_faces,
    }


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Detector input size vs recall and time ({result['date']}, {result['machine']['slug']})",
        "",
        f"Load average {result['machine']['load_before'][0]:.2f} before, {result['load_after']:.2f} after; "
        f"{result['threads']} ORT thread(s). Each cell: images with a face / images "
        "[recall of the faces found at the largest size] (same main face) — median CPU ms of decode + detection.",
        "",
        "| set | " + " | ".join(f"max side {s}" for s in SIZES) + " |",
        "|---|" + "---|" * len(SIZES),
    ]
    for name, data in result["datasets"].items():
        cells = []
        for size in SIZES:
            cell = data["sizes"][str(size)]
            recall = "" if name != "photos" else (f" [{cell['recall_vs_largest']:.3f}] ({cell['same_main_face']})")
            cells.append(f"{cell['with_face']}/{data['images']}{recall} — {cell['median_ms']:.1f} ms")
        lines.append(f"| {name} ({data['reference_faces']} faces at {max(SIZES)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.detector_size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=int, default=2000, help="LFW images (sampled; 7701 = all)")
    parser.add_argument("--pool", type=int, default=1000, help="images per training-pool set (sampled)")
    parser.add_argument("--threads", type=int, default=1, help="ORT threads (1: CPU time is all on this thread)")
    parser.add_argument("--manifest", type=Path, default=MODELS / "manifest.json")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Settings()  # fail early on bad FACE_* variables, as the service would
    machine = describe()
    detectors = _detectors(args.manifest, args.threads)
    datasets = {name: _dataset(name, files, detectors) for name, files in _files(args).items()}
    result = {
        "date": date.today().isoformat(),
        "machine": machine,
        "threads": args.threads,
        "sizes": list(SIZES),
        "datasets": datasets,
        "load_after": os.getloadavg()[0],
    }
    stem = args.out / f"detector-size-{result['date']}-{machine['slug']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    return result


if __name__ == "__main__":
    main()
