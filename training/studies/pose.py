"""Accuracy by head pose on the CelebA test split: how far each model falls behind on faces turned away.

``python -m training.studies.pose [--model mobileid-ensemble-int8 ...]`` scores the 6,000 protocol pairs of
``shared/data/celeba_test/pairs.tsv`` (10-fold: each fold's threshold picked on the other nine, as on LFW) for the
teachers (SFace, dlib, their standardised concatenation) and the students named, and tabulates the accuracy of the
pairs by the larger estimated yaw of their two faces. Every model sees the plain aligned crop of the data stage's
per-set cache (the training crop path; a flip-averaged student adds its mirror image's output, as served). The
CelebA test split is evaluation data: nothing here trains or tunes.

Yaw comes from the five landmarks (``training.data.landmarks.estimated_yaw``): coarse, but monotonic in the true yaw
and free.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.data.curate import set_cache, set_landmarks
from training.data.feature_cache import onnx_runner
from training.data.landmarks import estimated_yaw
from training.data.sets import POOL_SETS
from training.evaluate import Pairs, cosine_scores, fold_correct, roc_auc
from training.neurons import NeuronSpace
from training.paths import DATA, MODELS, REPO
from training.studies import write_table

log = logging.getLogger(__name__)

BINS = (0.0, 15.0, 30.0, 45.0, 90.0)


def protocol_pairs(files: list[str]) -> Pairs:
    index = {f.rsplit("/", 1)[-1]: i for i, f in enumerate(files)}
    rows = [line.split("\t") for line in (DATA / "celeba_test/pairs.tsv").read_text().splitlines()[1:] if line]
    return Pairs(
        np.array([index[r[1]] for r in rows]),
        np.array([index[r[2]] for r in rows]),
        np.array([r[3] == "1" for r in rows]),
        np.array([int(r[0]) for r in rows]),
    )


def pool_neuron_space() -> NeuronSpace:
    """The standardised SFace + dlib neuron space, fitted on the plain view of the first lineage's pool sets: how
    the studies put the teacher ensemble's two outputs side by side."""
    pool = [set_cache(name, set_landmarks(name)) for name in POOL_SETS]
    return NeuronSpace.fit(
        {t: np.concatenate([np.asarray(c.load(t, 0))[c.valid] for c in pool]) for t in ("sface", "dlib")}
    )


def pose_table(models: list[str]) -> dict[str, Any]:
    lm = set_landmarks("celeba_test")
    cache = set_cache("celeba_test", lm)
    pairs = protocol_pairs(lm.files)
    yaw = estimated_yaw(np.nan_to_num(lm.points))
    pair_yaw = np.maximum(yaw[pairs.left], yaw[pairs.right])
    raw = {t: np.asarray(cache.load(t, 0), np.float32) for t in ("sface", "dlib")}
    space = pool_neuron_space()
    embeddings = {"SFace": raw["sface"], "dlib": raw["dlib"], "SFace + dlib": space.transform(raw)}
    manifest = json.loads((MODELS / "manifest.json").read_text())["models"]
    crops = np.asarray(cache.load("arcface64", 0))
    for name in models:
        component = manifest[name]["components"][0]
        if component["input"]["width"] != 64 or len(manifest[name]["components"]) != 1:
            raise ValueError(f"{name}: only single-component 64 px students are supported here")
        run = onnx_runner(MODELS / component["file"])
        if component.get("shifts"):
            raise ValueError(f"{name}: served from shifted crops, which the cached crops cannot give")
        embeddings[name] = np.concatenate([run(crops[lo : lo + 256]) for lo in range(0, len(crops), 256)])
        if component.get("flip_average"):  # as served: the mirror image's raw output added
            mirrored = np.ascontiguousarray(crops[:, :, ::-1])
            embeddings[name] += np.concatenate([run(mirrored[lo : lo + 256]) for lo in range(0, len(crops), 256)])
    edges = list(zip(BINS[:-1], BINS[1:], strict=True))
    bins = [(pair_yaw >= lo) & (pair_yaw < hi) for lo, hi in edges]
    out: dict[str, Any] = {
        "pairs_per_bin": [int(b.sum()) for b in bins],
        "bins": [f"{lo:.0f}-{hi:.0f}" for lo, hi in edges],
        "models": {},
    }
    for name, emb in embeddings.items():
        scores = cosine_scores(emb, pairs)
        correct = fold_correct(scores, pairs)
        out["models"][name] = {
            "accuracy": float(correct.mean()),
            "auc": roc_auc(scores, pairs.same),
            "by_yaw": [float(correct[b].mean()) if b.any() else None for b in bins],
        }
    return out


def markdown(table: dict[str, Any]) -> str:
    head = "| model | all | " + " | ".join(f"yaw {b}°" for b in table["bins"]) + " |"
    rows = [head, "|---|---|" + "---|" * len(table["bins"])]
    rows.append("| pairs | 6000 | " + " | ".join(str(n) for n in table["pairs_per_bin"]) + " |")
    for name, m in table["models"].items():
        cells = " | ".join("-" if a is None else f"{100 * a:.1f} %" for a in m["by_yaw"])
        rows.append(f"| {name} | {100 * m['accuracy']:.2f} % | {cells} |")
    return (
        "# Accuracy by estimated yaw, CelebA test split (6,000 protocol pairs, 10-fold)\n\n"
        "Made by `python -m training.studies.pose`. A pair's yaw is the larger of its two faces' (from the five"
        " landmarks, `training/studies/pose.py`); accuracy at each fold's threshold picked on the other nine folds.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.studies.pose", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", default=None, help="student(s) of models/manifest.json (default: its default)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "pose")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO")
    table = pose_table(args.model or [json.loads((MODELS / "manifest.json").read_text())["default_model"]])
    write_table(args.out, "pose", table, markdown(table))
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
