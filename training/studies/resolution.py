"""What the input size costs the teachers: is a 64 px student short of pixels, or of fit?

``python -m training.studies.resolution [--face 112 --face 64 ...]`` renders each teacher's own crop (SFace
112 px, dlib 150 px) of the photos in the CelebA test split's selection folds (0-4, the 3,000 protocol pairs
the twins are decided on), reduces it to the pixels a ``face`` px crop of the same face would carry (box filter;
112 px of SFace's crop = ``face`` px), scales it back up to the teacher's input (bicubic), and scores the
teachers on the pairs (10-fold on folds 0-4, each fold's threshold picked on the other four). If the teachers
keep their accuracy at 64 px of face, a 64 px student is not held back by its input size.
The CelebA test split is evaluation data: nothing here trains or tunes.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from training.data.curate import set_landmarks
from training.data.feature_cache import onnx_runner
from training.data.sets import load_rgb
from training.data.views import IDENTITY, render_view
from training.evaluate import cosine_scores, row_cosine, tar_at_far, ten_fold
from training.paths import REPO
from training.studies import write_table
from training.studies.compare import selection_pairs
from training.studies.pose import pool_neuron_space, protocol_pairs
from training.teachers.build import build_teachers

log = logging.getLogger(__name__)

REFERENCE = 112  # SFace's crop: ``face`` px are counted on this scale


def reduced(crops: NDArray[np.uint8], pixels: int) -> NDArray[np.uint8]:
    """``(N, S, S, 3)`` crops carrying only ``pixels`` x ``pixels`` of detail: box-reduced, bicubic back to S."""
    full = crops.shape[1]
    if pixels >= full:
        return crops
    out = np.empty_like(crops)
    for i, crop in enumerate(crops):
        small = Image.fromarray(crop).resize((pixels, pixels), Image.Resampling.BOX)
        out[i] = np.asarray(small.resize((full, full), Image.Resampling.BICUBIC))
    return out


def resolution_table(faces: list[int]) -> dict[str, Any]:
    lm = set_landmarks("celeba_test")
    pairs = selection_pairs(protocol_pairs(lm.files))
    needed = pairs.images()
    teachers = build_teachers()
    specs = {name: (t.crop.template, t.crop.size) for name, t in teachers.items()}
    crops = {name: np.zeros((len(needed), t.crop.size[1], t.crop.size[0], 3), np.uint8) for name, t in teachers.items()}
    rng = np.random.default_rng(0)  # unused by the plain view, which adds no noise
    for k, i in enumerate(tqdm(needed, desc="teacher crops", unit="img", mininterval=10)):
        made = render_view(load_rgb(lm.files[i]), lm.points[i], specs, IDENTITY, rng, None)
        for name in specs:
            crops[name][k] = made[name]
    space = pool_neuron_space()
    runners = {name: onnx_runner(t.file) for name, t in teachers.items()}
    out: dict[str, Any] = {"pairs": len(pairs.same), "images": len(needed), "faces": {}}
    full_size: NDArray[np.float32] | None = None
    for face in sorted(faces, reverse=True):
        raw = {}
        for name, run in runners.items():
            pixels = round(face * crops[name].shape[1] / REFERENCE)
            embedded = run(reduced(crops[name], pixels))
            rows = np.zeros((len(lm.files), embedded.shape[1]), np.float32)
            rows[needed] = embedded
            raw[name] = rows
        ensemble = space.transform(raw)
        if full_size is None:
            full_size = ensemble
        entry: dict[str, Any] = {"cos_to_largest": float(row_cosine(ensemble[needed], full_size[needed]).mean())}
        for name, emb in {"SFace": raw["sface"], "dlib": raw["dlib"], "SFace + dlib": ensemble}.items():
            scores = cosine_scores(emb, pairs)
            ver = ten_fold(scores, pairs)
            entry[name] = {
                "accuracy": ver.accuracy,
                "auc": ver.roc_auc,
                "tar_at_far_1e2": tar_at_far(scores, pairs.same, 1e-2),
            }
        out["faces"][str(face)] = entry
        log.info("%d px of face: %s", face, json.dumps(entry))
    return out


def markdown(table: dict[str, Any]) -> str:
    rows = [
        "| px of face (SFace crop scale) | SFace | dlib | SFace + dlib | its AUC | TAR @ FAR 1e-2 |"
        " cosine to the largest |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for face, e in table["faces"].items():
        ens = e["SFace + dlib"]
        rows.append(
            f"| {face} | {100 * e['SFace']['accuracy']:.2f} % | {100 * e['dlib']['accuracy']:.2f} %"
            f" | {100 * ens['accuracy']:.2f} % | {ens['auc']:.4f} | {100 * ens['tar_at_far_1e2']:.1f} %"
            f" | {e['cos_to_largest']:.4f} |"
        )
    return (
        "# The teachers at reduced input resolution, CelebA test split folds 0-4\n\n"
        f"Made by `python -m training.studies.resolution`. {table['pairs']} protocol pairs ({table['images']}"
        " photos); each teacher's own crop reduced to the detail of a face of that many pixels on SFace's 112 px"
        " scale, scaled back up; 10-fold on folds 0-4. The students take 64 px.\n\n" + "\n".join(rows) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.studies.resolution", description=__doc__.split("\n\n")[0])
    parser.add_argument("--face", type=int, action="append", default=None, help="px of face (default 112 80 64 48)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "resolution")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO")
    table = resolution_table(args.face or [112, 80, 64, 48])
    write_table(args.out, "resolution", table, markdown(table))
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
