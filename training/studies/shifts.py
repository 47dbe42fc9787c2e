"""Test-time shifted crops: which set of crops per face serves a student best, decided off the reported data.

``python -m training.studies.shifts [--model mobileid-ensemble-int8]`` embeds every photo of the CelebA test
split's protocol folds 0-4 (the folds thresholds are calibrated on; folds 5-9 and LFW are what we report) through
the service's engine (decode, YuNet, main face), then crops each face with the model's template moved by
``(dx, dy)`` crop pixels for every offset of :func:`offsets` and embeds every crop and its mirror image. A set
of crops (with or without their mirror images: ``flip_average``) is scored by adding its crops' unit embeddings
(the served sum adds raw outputs; their norms are close) and measuring the protocol pairs 5-fold cross-validated
(threshold fit on four folds, scored on the fifth) and by AUC; the best set is reported per graph passes per face,
since each pass costs the model's time once more. Writes ``runs/shifts/README.md`` and ``shifts.json``. The set
chosen here is published as a served variant (manifest ``shifts``) and calibrated by
``python -m training.calibrate --served-lfw``, which measures it on folds 5-9 and LFW.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from service.config import Settings
from service.engine import Engine
from service.errors import ServiceError
from service.imaging import decode
from service.locating import locate
from service.preprocessing import crop_face
from training.data.calibration_sets import CALIBRATION_FOLDS, CELEBA_TEST_IMAGES
from training.evaluate import roc_auc
from training.paths import DATA, MODELS, REPO
from training.studies import write_table

log = logging.getLogger(__name__)

STEPS = (0.5, 1.0, 1.5, 2.0)
"""Crop-pixel distances of the shifted crops (the model's crop is 64 px: 0.8-3 % of its side)."""


def offsets() -> dict[str, tuple[float, float]]:
    """The centred crop and, per step, the crops moved left, right, up and down."""
    found = {"centre": (0.0, 0.0)}
    for step in STEPS:
        found |= {f"x+{step:g}": (step, 0.0), f"x-{step:g}": (-step, 0.0)}
        found |= {f"y+{step:g}": (0.0, step), f"y-{step:g}": (0.0, -step)}
    return found


def candidate_sets() -> dict[str, list[str]]:
    """The sets of crops scored: per step, the pair along x, along y, the cross, and the cross with the centre."""
    sets = {"centre (1 crop, as the default is served)": ["centre"]}
    for step in STEPS:
        s = f"{step:g}"
        sets[f"x ±{s} (2 crops)"] = [f"x+{s}", f"x-{s}"]
        sets[f"y ±{s} (2 crops)"] = [f"y+{s}", f"y-{s}"]
        sets[f"centre + x ±{s} (3 crops)"] = ["centre", f"x+{s}", f"x-{s}"]
        sets[f"cross ±{s} (4 crops)"] = [f"x+{s}", f"x-{s}", f"y+{s}", f"y-{s}"]
        sets[f"centre + cross ±{s} (5 crops)"] = ["centre", f"x+{s}", f"x-{s}", f"y+{s}", f"y-{s}"]
    return sets


def cv_accuracy(scores: NDArray[np.float64], same: NDArray[np.bool_], folds: NDArray[np.int64]) -> list[float]:
    """Per fold, accuracy at the threshold that is best on the other folds (candidates: their scores' quantiles)."""
    accuracies = []
    for fold in sorted(set(folds.tolist())):
        fit, test = folds != fold, folds == fold
        candidates = np.quantile(scores[fit], np.linspace(0.0, 1.0, 2001))
        best = candidates[int(np.argmax([np.mean((scores[fit] >= t) == same[fit]) for t in candidates]))]
        accuracies.append(float(np.mean((scores[test] >= best) == same[test])))
    return accuracies


def embed_offsets(engine: Engine, images: Path, files: list[str]) -> tuple[list[str], dict[str, NDArray[np.float32]]]:
    """The files with a face, and per offset (``<name>`` and its mirror image ``<name>~``) their unit one-crop
    embeddings ``(N, dim)``."""
    component = engine.components[0]
    moved = {
        name: component.spec.input.model_copy(
            update={"template": [(x + dx, y + dy) for x, y in component.spec.input.template]}
        )
        for name, (dx, dy) in offsets().items()
    }
    kept: list[str] = []
    rows: dict[str, list[NDArray[np.float32]]] = {f"{name}{m}": [] for name in moved for m in ("", "~")}
    for file in tqdm(files, desc="embed shifted crops", unit="img"):
        try:
            decoded = decode((images / file).read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30, min_side=640)
            face = locate(engine.detector, decoded.image, require_single_face=False).face
        except ServiceError:
            continue
        kept.append(file)
        crops = np.stack([crop_face(decoded.image, face.landmarks, spec) for spec in moved.values()])
        vectors = engine._embed_crops([np.concatenate([crops, crops[:, :, ::-1]])])  # one crop per "face" here
        for name, vector in zip([*moved, *(f"{n}~" for n in moved)], vectors, strict=True):
            rows[name].append(vector)
    return kept, {name: np.stack(vectors) for name, vectors in rows.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.studies.shifts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="manifest model (default: the manifest's default)")
    parser.add_argument("--images", type=Path, default=CELEBA_TEST_IMAGES, help="the CelebA test split's photos")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "shifts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = Engine.load(Settings(manifest=MODELS / "manifest.json", model=args.model, log_level="WARNING"))
    spec = engine.components[0].spec
    if len(engine.components) != 1 or spec.shifts or spec.flip_average:
        raise SystemExit(f"{engine.card.name}: the study takes a one-component model served from one plain crop")
    lines = [r.split("\t") for r in (DATA / "celeba_test" / "pairs.tsv").read_text().splitlines()[1:] if r]
    rows = [r for r in lines if int(r[0]) in CALIBRATION_FOLDS]
    files, embedded = embed_offsets(engine, args.images, sorted({r[1] for r in rows} | {r[2] for r in rows}))
    index = {f: i for i, f in enumerate(files)}
    usable = [r for r in rows if r[1] in index and r[2] in index]
    left, right = np.array([index[r[1]] for r in usable]), np.array([index[r[2]] for r in usable])
    same, folds = np.array([r[3] == "1" for r in usable]), np.array([int(r[0]) for r in usable])
    table: dict[str, Any] = {
        "model": engine.card.name,
        "pairs": len(usable),
        "photos": len(files),
        "folds": sorted(CALIBRATION_FOLDS),
        "sets": {},
    }
    candidates = {
        (f"{label} + mirror" if mirror else label): names + [f"{n}~" for n in names] * mirror
        for mirror in (False, True)
        for label, names in candidate_sets().items()
    }
    for label, names in candidates.items():
        summed = sum(embedded[name] for name in names)
        unit = summed / np.linalg.norm(summed, axis=1, keepdims=True)
        scores = np.sum(unit[left] * unit[right], axis=1).astype(np.float64)
        accuracies = cv_accuracy(scores, same, folds)
        table["sets"][label] = {
            "offsets": [offsets()[name.rstrip("~")] for name in names if not name.endswith("~")],
            "flip_average": any(name.endswith("~") for name in names),
            "passes": len(names),
            "cv_accuracy": float(np.mean(accuracies)),
            "cv_std": float(np.std(accuracies)),
            "auc": roc_auc(scores, same),
        }
    sets = table["sets"]
    best = {
        passes: max(
            (k for k in sets if sets[k]["passes"] == passes), key=lambda k: (sets[k]["cv_accuracy"], sets[k]["auc"])
        )
        for passes in sorted({entry["passes"] for entry in sets.values()})
    }
    table["best_per_passes"] = best
    text = [
        f"# Test-time shifted crops for {engine.card.name}",
        "",
        f"`python -m training.studies.shifts`: CelebA test split, protocol folds {table['folds']} only "
        f"({len(usable)} pairs, {len(files)} photos; the calibration folds: folds 5-9 and LFW are reported, "
        "never decided on), each face embedded through the service's engine from crops with the template moved "
        "by the offsets below (crop pixels); 5-fold cross-validated accuracy and AUC of the summed embeddings.",
        "",
        "| crops per face | passes | CV accuracy | AUC |",
        "|---|--:|--:|--:|",
    ]
    for label, entry in sorted(sets.items(), key=lambda item: item[1]["passes"]):
        mark = f" **(best of {entry['passes']} passes)**" if best[entry["passes"]] == label else ""
        cv = f"{100 * entry['cv_accuracy']:.2f} ± {100 * entry['cv_std']:.2f}"
        text.append(f"| {label}{mark} | {entry['passes']} | {cv} | {entry['auc']:.4f} |")
    write_table(args.out, "shifts", table, "\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
