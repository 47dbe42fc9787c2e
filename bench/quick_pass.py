"""Does the quick pass cost accuracy on large photos? ``python -m bench.quick_pass``.

The service searches a photo whose long side is 432 px or more on a ~288 px copy and measures the main face's
landmarks again on a close-up (:mod:`service.locating`); smaller photos get one pass at 640 px. The two give
different landmarks (YuNet's jitter), so different embeddings of the same photo. This compares their
verification accuracy on identity-labelled pairs, each photo run through both on the same decode:

* the real photos' pairs of ``../shared/data/photos/master.csv`` (300 pairs; most of its photos are large);
* the CelebA test split's decision folds 0-4 (3,000 pairs; never the folds we report), every photo upscaled
  ``k`` times (bicubic, then JPEG quality 92) so that the quick pass applies to it, and at its own ~200 px size
  (where both are one pass, the baseline).

Accuracy: at the served threshold, and 5-fold cross-validated (threshold fit on four folds, scored on the fifth);
McNemar's exact test on the pairs the two decide differently at the served threshold. Time: median wall ms of
the face search alone on the real photos, both variants side by side in this run.

Writes ``bench/results/quick-pass-<date>-<machine>.json`` and ``.md``. LFW is not used: this decides a
pipeline design.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import statistics
import time
from collections.abc import Callable
from datetime import date
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from bench.machine import describe
from service.config import Settings
from service.cropping import face_crops
from service.detection import Face, main_face_index
from service.engine import Engine
from service.errors import ServiceError
from service.imaging import decode
from service.locating import locate
from training.paths import DATA, MORE, REPO

log = logging.getLogger("bench.quick_pass")

MAX_BYTES = MAX_PIXELS = 1 << 30
VARIANTS = ("served", "one_pass_640")


def _search(engine: Engine, variant: str, image: Image.Image) -> Face:
    if variant == "served":
        return locate(engine.detector, image, require_single_face=False).face
    faces = engine.detector.detect(image)
    if not faces:
        raise ServiceError("no face was found")
    return faces[main_face_index(faces, image.height, image.width)]


def _embeddings(engine: Engine, photos: dict[str, Callable[[], bytes]]) -> dict[str, dict[str, NDArray[np.float32]]]:
    """Per variant, the unit embedding of every photo in which it finds a face (same decode for both)."""
    specs = [component.spec.input for component in engine.components]
    found: dict[str, dict[str, NDArray[np.float32]]] = {v: {} for v in VARIANTS}
    for index, (name, load) in enumerate(photos.items()):
        decoded = decode(load(), min_side=engine.detector.config.max_side, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
        for variant in VARIANTS:
            try:
                face = _search(engine, variant, decoded.image)
            except ServiceError:
                continue
            crops = face_crops(decoded, face.landmarks, specs)
            found[variant][name] = engine._embed_crops([crop[None] for crop in crops])[0]
        if index % 1000 == 999:
            log.info("%d / %d photos", index + 1, len(photos))
    return found


def _scores(
    found: dict[str, dict[str, NDArray[np.float32]]], pairs: list[tuple[str, str, bool, int]], threshold: float
) -> dict[str, Any]:
    usable = [p for p in pairs if all(p[0] in found[v] and p[1] in found[v] for v in VARIANTS)]
    same = np.array([p[2] for p in usable])
    folds = np.array([p[3] for p in usable])
    result: dict[str, Any] = {"pairs": len(usable), "pairs_without_a_face": len(pairs) - len(usable)}
    right = {}
    for variant in VARIANTS:
        sims = np.array([float(found[variant][a] @ found[variant][b]) for a, b, _, _ in usable])
        right[variant] = (sims >= threshold) == same
        positives, negatives = sims[same], sims[~same]
        auc = float((positives[:, None] > negatives[None, :]).mean() + 0.5 * (positives[:, None] == negatives).mean())
        entry: dict[str, Any] = {"accuracy_at_served_threshold": float(right[variant].mean()), "auc": auc}
        if len(set(folds.tolist())) > 1:
            accuracies = []
            for fold in sorted(set(folds.tolist())):
                fit, test = folds != fold, folds == fold
                best = max(np.unique(sims[fit]), key=lambda t: float(((sims[fit] >= t) == same[fit]).mean()))
                accuracies.append(float(((sims[test] >= best) == same[test]).mean()))
            entry["cv_accuracy"], entry["cv_std"] = float(np.mean(accuracies)), float(np.std(accuracies))
        result[variant] = entry
    served_only = int((right["served"] & ~right["one_pass_640"]).sum())
    one_pass_only = int((~right["served"] & right["one_pass_640"]).sum())
    result["discordant"] = {"served_right_only": served_only, "one_pass_right_only": one_pass_only}
    result["mcnemar_p"] = mcnemar(served_only, one_pass_only)
    return result


def mcnemar(first: int, second: int) -> float:
    """Two-sided exact McNemar p-value for ``first`` and ``second`` discordant pairs."""
    total = first + second
    if total == 0:
        return 1.0
    tail = sum(comb(total, i) for i in range(min(first, second) + 1)) / float(2**total)
    return min(1.0, 2 * tail)


def _upscaled(path: Path, factor: float) -> Callable[[], bytes]:
    def load() -> bytes:
        image = Image.open(path).convert("RGB")
        if factor != 1:
            size = (round(image.width * factor), round(image.height * factor))
            image = image.resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        return buffer.getvalue()

    return load


def _search_ms(engine: Engine, photos: list[Path]) -> dict[str, float]:
    images = [
        decode(
            p.read_bytes(), min_side=engine.detector.config.max_side, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS
        ).image
        for p in photos
    ]
    best: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for image in images:
        for variant in VARIANTS:
            times = []
            for _ in range(3):
                started = time.perf_counter()
                _search(engine, variant, image)
                times.append(time.perf_counter() - started)
            best[variant].append(min(times))
    return {v: 1000 * statistics.median(t) for v, t in best.items()}


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Quick pass vs one 640 px pass: accuracy on large photos ({result['date']}, {result['machine']['slug']})",
        "",
        "Written by `python -m bench.quick_pass` (the docstring says how). Served threshold "
        f"{result['threshold']}; CV = 5-fold cross-validated accuracy on the CelebA test split's folds 0-4.",
        "",
        "| set | pairs | served: acc @ threshold | served: CV | served: AUC | one 640 px pass: acc @ threshold "
        "| one pass: CV | one pass: AUC | discordant (served right / one pass right) | McNemar p |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, entry in result["sets"].items():
        cells = [name, str(entry["pairs"])]
        for variant in VARIANTS:
            scores = entry[variant]
            cv = f"{100 * scores['cv_accuracy']:.2f} ± {100 * scores['cv_std']:.2f}" if "cv_accuracy" in scores else "-"
            cells += [f"{100 * scores['accuracy_at_served_threshold']:.2f} %", cv, f"{scores['auc']:.4f}"]
        discordant = entry["discordant"]
        cells += [
            f"{discordant['served_right_only']} / {discordant['one_pass_right_only']}",
            f"{entry['mcnemar_p']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    pooled = result["pooled"]
    times = result["search_ms_real_photos"]
    lines += [
        "",
        f"Upscaled sets pooled with master.csv: {pooled['served_right_only']} pairs only the quick pass gets right, "
        f"{pooled['one_pass_right_only']} only the one pass (McNemar p {pooled['mcnemar_p']:.3f}).",
        f"Face search on the 64 real photos, median: served {times['served']:.2f} ms, one 640 px pass "
        f"{times['one_pass_640']:.2f} ms (load average {result['machine']['load_before'][0]:.2f} before the run).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.quick_pass", description=__doc__.split("\n\n")[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 3.0, 5.0], help="CelebA-test upscales")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    machine = describe()
    engine = Engine.load(Settings())
    threshold = engine.card.threshold
    photos_dir, celeba_dir = DATA / "photos", MORE / "celeba_test"
    if not celeba_dir.is_dir():
        raise SystemExit(f"{celeba_dir} is missing: extract the CelebA test split first (python -m training data)")
    sets: dict[str, Any] = {}
    with open(photos_dir / "master.csv", newline="") as handle:
        master = [(r["file_x"], r["file_y"], r["Decision"] == "Yes", 0) for r in csv.DictReader(handle)]
    names = sorted({p[0] for p in master} | {p[1] for p in master})
    real = _embeddings(engine, {n: (photos_dir / n).read_bytes for n in names})
    sets["master.csv (real photos)"] = _scores(real, master, threshold)
    with open(DATA / "celeba_test" / "pairs.tsv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if int(r["fold"]) < 5]
    pairs = [(r["file1"], r["file2"], r["same"] == "1", int(r["fold"])) for r in rows]
    files = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
    compared = [sets["master.csv (real photos)"]]  # the sets where the two variants differ (not x1: one pass)
    for factor in args.factors:
        log.info("CelebA test folds 0-4 at %gx: %d photos", factor, len(files))
        found = _embeddings(engine, {n: _upscaled(celeba_dir / n, factor) for n in files})
        sets[f"CelebA-test folds 0-4, photos x{factor:g}"] = _scores(found, pairs, threshold)
        if factor != 1:
            compared.append(sets[f"CelebA-test folds 0-4, photos x{factor:g}"])
    served_only = sum(e["discordant"]["served_right_only"] for e in compared)
    one_pass_only = sum(e["discordant"]["one_pass_right_only"] for e in compared)
    result = {
        "date": date.today().isoformat(),
        "machine": machine,
        "threshold": threshold,
        "model": engine.card.name,
        "sets": sets,
        "pooled": {
            "served_right_only": served_only,
            "one_pass_right_only": one_pass_only,
            "mcnemar_p": mcnemar(served_only, one_pass_only),
        },
        "search_ms_real_photos": _search_ms(engine, sorted(photos_dir.glob("*.jpg"))),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"quick-pass-{result['date']}-{machine['slug']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    return result


if __name__ == "__main__":
    main()
