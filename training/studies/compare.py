"""Twins side by side on held-out data: the evidence a recipe lever is kept or dropped on.

``python -m training.studies.compare runs/A runs/B ... [--out runs/levers]`` scores the trained student of each run (its
last checkpoint, fused as served, in float: the lever, not the int8 export, is what is compared) on

* the **selection folds of the CelebA test split**: the protocol pairs of ``shared/data/celeba_test/pairs.tsv``
  in folds 0-4 (3,000 pairs; each fold's threshold picked on the other four). These are the folds the operating
  points are calibrated on; folds 5-9 and LFW stay unseen for the figures we report;
* **every pair** of the photos of the identities of folds 0-4 (about 90 k genuine and 38 M impostor pairs, as the
  operating points are calibrated): TAR at the thresholds of FAR 1e-2, 1e-3 and 1e-4, and the TAR of the genuine
  pairs with a face turned by ``TURNED`` degrees or more at those same thresholds. The protocol pairs hold 1,500
  impostors, too few to tell low false-accept rates apart;
* the **pool's held-out identities** (the run's own last history record: one pass, no flip);
* the **fit on training images**: cosine to the target on ``FIT_IMAGES`` seeded training images of the run (plain
  view 0, no augmentation), beside the held-out cosine. Close to it, the student underfits: more images of the
  same kind will not raise it, a better fit (capacity, schedule, target) will.

The selected teacher neurons of each run are scored the same way: the ceiling the student regresses towards.
Nothing here trains: it reads checkpoints and the per-set cache of the CelebA test split (plain view 0; crops of a
student input size the cache has none of are rendered into it once).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.config import load_config
from training.data.calibration_sets import read_celeba_test
from training.data.curate import set_cache, set_landmarks
from training.data.feature_cache import ViewCache, arcface_crop, onnx_runner
from training.data.landmarks import estimated_yaw
from training.evaluate import Pairs, cosine_scores, fold_correct, row_cosine, tar_at_far, ten_fold
from training.neurons import NeuronSpace
from training.operating_points import all_pair_scores, threshold_at_far
from training.paths import MODELS
from training.stages.run import Run, holdout, pool_split
from training.stages.train import load_trained
from training.student import Student
from training.studies import write_table
from training.studies.pose import protocol_pairs
from training.trainer import predict

log = logging.getLogger(__name__)

SELECTION_FOLDS = (0, 1, 2, 3, 4)
TURNED = 30.0  # degrees of estimated yaw (the larger of a pair's two faces) from which a pair counts as turned
FARS = (1e-2, 1e-3, 1e-4)  # the operating points of the all-pairs figures
FIT_IMAGES = 4000  # training images the fit is measured on (seeded: the same ones for twins of one pool)


def selection_pairs(pairs: Pairs) -> Pairs:
    keep = np.isin(pairs.fold, SELECTION_FOLDS)
    return Pairs(pairs.left[keep], pairs.right[keep], pairs.same[keep], pairs.fold[keep])


def _scores(embeddings: NDArray[np.floating], pairs: Pairs, turned: NDArray[np.bool_]) -> dict[str, float]:
    scores = cosine_scores(embeddings, pairs)
    ver = ten_fold(scores, pairs)
    return {
        "accuracy": ver.accuracy,
        "accuracy_std": ver.accuracy_std,
        "auc": ver.roc_auc,
        "tar_at_far_1e2": tar_at_far(scores, pairs.same, 1e-2),
        "accuracy_turned": float(fold_correct(scores, pairs)[turned].mean()),
    }


def genuine_flags(identities: NDArray[np.int64], flagged: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """For each genuine pair of ``all_pair_scores(_, identities)``, in its order, whether either image is
    ``flagged``. That order is row-major over the upper triangle: image ``i``, then each later image of its identity."""
    flags = [
        flagged[i] | flagged[np.flatnonzero(identities[i + 1 :] == identities[i]) + i + 1]
        for i in range(len(identities))
    ]
    return np.concatenate(flags) if flags else np.zeros(0, bool)


class AllPairs:
    """Every pair of the selection folds' photos (those with a face), and which genuine pairs have a turned face."""

    def __init__(self, files: list[str], yaw: NDArray[np.float64], found: NDArray[np.bool_]) -> None:
        split = read_celeba_test()
        at = {f.rsplit("/", 1)[-1]: i for i, f in enumerate(files)}
        index = np.array([at[f] for f in split.files])
        keep = split.photos_in(SELECTION_FOLDS) & found[index]
        self.images, self.identities = index[keep], split.identities[keep]
        self.turned = genuine_flags(self.identities, yaw[self.images] >= TURNED)

    def scores(self, embeddings: NDArray[np.floating]) -> dict[str, float | int]:
        unit = embeddings[self.images] / np.linalg.norm(embeddings[self.images], axis=1, keepdims=True)
        pairs = all_pair_scores(unit.astype(np.float32), self.identities)
        out: dict[str, float | int] = {
            "genuine": len(pairs.genuine),
            "impostor": len(pairs.impostor),
            "turned_genuine": int(self.turned.sum()),
        }
        for far in FARS:
            threshold = threshold_at_far(pairs.impostor, far)
            out[f"tar_at_far_{far:.0e}"] = float(np.mean(pairs.genuine >= threshold))
            out[f"turned_tar_at_far_{far:.0e}"] = float(np.mean(pairs.genuine[self.turned] >= threshold))
        return out


def student_crops(cache: ViewCache, size: int) -> NDArray[np.uint8]:
    """The plain ``size`` px student crops of a per-set cache, rendered first if that size has none yet."""
    name = f"arcface{size}"
    if not cache.complete(name, 0):
        cache.build(0, {name: (arcface_crop(size), None)})
    return np.asarray(cache.load(name, 0))


def _published(name: str, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Embeddings of a single-component 64 px student of models/manifest.json, as served (its ONNX file; with
    ``flip_average``, plus its output on the mirror image)."""
    component, *rest = json.loads((MODELS / "manifest.json").read_text())["models"][name]["components"]
    if rest or component["input"]["width"] != crops.shape[1] or component.get("shifts"):
        raise ValueError(f"{name}: only single-component {crops.shape[1]} px students without shifts are supported")
    out = _onnx(MODELS / component["file"], crops)
    if component.get("flip_average"):
        out = out + _onnx(MODELS / component["file"], np.ascontiguousarray(crops[:, :, ::-1]))
    return out


def _onnx(graph: Path, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    run = onnx_runner(graph)
    return np.concatenate([run(crops[lo : lo + 256]) for lo in range(0, len(crops), 256)])


def compare(run_dirs: list[Path], models: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    lm = set_landmarks("celeba_test")
    cache = set_cache("celeba_test", lm)
    pairs = selection_pairs(protocol_pairs(lm.files))
    yaw = estimated_yaw(np.nan_to_num(lm.points))
    turned = np.maximum(yaw[pairs.left], yaw[pairs.right]) >= TURNED
    every_pair = AllPairs(lm.files, yaw, ~np.isnan(lm.points[:, 0, 0]))
    needed = np.union1d(pairs.images(), every_pair.images)
    raw_all = {t: np.asarray(cache.load(t, 0), np.float32) for t in ("sface", "dlib")}
    out: dict[str, Any] = {
        "pairs": len(pairs.same),
        "turned_pairs": int(turned.sum()),
        "all_pairs_photos": len(every_pair.images),
        "folds": list(SELECTION_FOLDS),
        "runs": {},
    }
    crops_by_size: dict[int, NDArray[np.uint8]] = {}
    for run_dir in run_dirs:
        cfg = load_config(run_dir / "config.yaml")
        size = cfg.student.input_size
        if size not in crops_by_size:
            crops_by_size[size] = student_crops(cache, size)
        model = load_trained(run_dir, cfg.student)
        chosen = json.loads((run_dir / "selection.json").read_text())["selected"]
        space = NeuronSpace.load(run_dir / "neurons.npz")
        student = np.zeros((len(lm.files), len(chosen)), np.float32)
        student[needed] = predict(model, crops_by_size[size][needed])
        teacher = space.transform({t: raw_all[t] for t in space.teachers})[:, chosen]
        last = json.loads((run_dir / "history.json").read_text())[-1]
        out["runs"][cfg.name] = {
            "config_hash": cfg.hash(),
            "epochs": last["epoch"],
            "celeba_test_selection_folds": _scores(student, pairs, turned),
            "celeba_test_selection_folds_all_pairs": every_pair.scores(student),
            "selected_teacher_neurons": _scores(teacher, pairs, turned),
            "selected_teacher_neurons_all_pairs": every_pair.scores(teacher),
            "holdout_1pass": {key: last[f"holdout_1pass_{key}"] for key in ("cos_to_teacher", "accuracy", "auc")},
            "train_cos_to_teacher": training_fit(run_dir, model, chosen, space),
        }
        log.info("%s: %s", cfg.name, json.dumps(out["runs"][cfg.name]["celeba_test_selection_folds"]))
        if (shipped := run_dir / "student.onnx").exists():  # exported: also as it would ship (int8 or float)
            student[needed] = _onnx(shipped, crops_by_size[size][needed])
            out["runs"][f"{cfg.name} (exported, ONNX)"] = {
                **out["runs"][cfg.name],
                "celeba_test_selection_folds": _scores(student, pairs, turned),
                "celeba_test_selection_folds_all_pairs": every_pair.scores(student),
            }
    held_out = holdout_set(run_dirs[0]) if run_dirs and models else None
    for name in models:
        crops = crops_by_size.get(64)
        crops = np.asarray(cache.load("arcface64", 0)) if crops is None else crops
        embedded = _published(name, crops[needed])
        student = np.zeros((len(lm.files), embedded.shape[1]), np.float32)
        student[needed] = embedded
        holdout_1pass: dict[str, float] = {}
        if held_out is not None:  # the first run's held-out pairs, so that the figures sit side by side
            hold_crops, hold_pairs = held_out
            ver = ten_fold(cosine_scores(_published(name, hold_crops), hold_pairs), hold_pairs)
            holdout_1pass = {"accuracy": ver.accuracy, "auc": ver.roc_auc}
        out["runs"][f"{name} (published, ONNX)"] = {
            "epochs": None,
            "celeba_test_selection_folds": _scores(student, pairs, turned),
            "celeba_test_selection_folds_all_pairs": every_pair.scores(student),
            "selected_teacher_neurons": None,
            "holdout_1pass": holdout_1pass,
        }
    return out


def training_fit(run_dir: Path, model: Student, chosen: list[int], space: NeuronSpace) -> float:
    """Mean cosine of the student to its target on ``FIT_IMAGES`` of the run's training images (seeded), in
    their plain view (0), without augmentation: the fit the held-out cosine is compared with."""
    run = Run(load_config(run_dir / "config.yaml"), run_dir.parent)
    cache = run.cache()
    rows, _ = pool_split(run)
    rows = np.sort(np.random.default_rng(0).choice(rows, min(FIT_IMAGES, len(rows)), replace=False))
    target = space.transform({t: np.asarray(cache.load(t, 0))[rows] for t in space.teachers})[:, chosen]
    crops = np.asarray(cache.load(run.student_crop_name(), 0))[rows]
    return float(row_cosine(predict(model, crops), target).mean())


def holdout_set(run_dir: Path) -> tuple[NDArray[np.uint8], Pairs]:
    """A run's held-out pairs (pool identities never trained on) and their plain 64 px crops, with the pairs
    indexing those crops."""
    run = Run(load_config(run_dir / "config.yaml"), run_dir.parent)
    _, pairs = holdout(run)
    images, local = pairs.on_images()
    return np.asarray(run.cache().load("arcface64", 0))[images], local


def _tar_cells(figures: dict[str, Any]) -> str:
    """An :meth:`AllPairs.scores` record as table cells: TAR at each of :data:`FARS`, all then turned pairs."""
    return " | ".join(
        f"{100 * figures[f'{kind}tar_at_far_{far:.0e}']:.2f} %" for kind in ("", "turned_") for far in FARS
    )


def markdown(table: dict[str, Any]) -> str:
    rows = [
        "| run | epochs | CelebA-test folds 0-4 accuracy | AUC | TAR @ FAR 1e-2 | turned pairs accuracy |"
        " held-out cosine | training-images cosine | held-out accuracy | held-out AUC |"
        " its teacher neurons (CelebA-test acc.) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, r in table["runs"].items():
        c, h, t = r["celeba_test_selection_folds"], r["holdout_1pass"], r["selected_teacher_neurons"]
        cos = f"{h['cos_to_teacher']:.4f}" if "cos_to_teacher" in h else "-"
        fit = f"{r['train_cos_to_teacher']:.4f}" if r.get("train_cos_to_teacher") is not None else "-"
        held = f"{cos} | {fit} | {100 * h['accuracy']:.2f} % | {h['auc']:.4f}" if h else f"- | {fit} | - | -"
        ceiling = f"{100 * t['accuracy']:.2f} %" if t else "-"
        rows.append(
            f"| {name} | {r['epochs'] or '-'} | {100 * c['accuracy']:.2f} ± {100 * c['accuracy_std']:.2f} %"
            f" | {c['auc']:.4f} | {100 * c['tar_at_far_1e2']:.1f} % | {100 * c['accuracy_turned']:.1f} % | {held}"
            f" | {ceiling} |"
        )
    every = [
        "| run | TAR @ FAR 1e-2 | 1e-3 | 1e-4 | turned genuine pairs: TAR @ FAR 1e-2 | 1e-3 | 1e-4 |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    counts = ""
    for name, r in table["runs"].items():
        a = r.get("celeba_test_selection_folds_all_pairs")
        if a is None:  # a table written before the all-pairs figures
            continue
        counts = f"{a['genuine']:,} genuine ({a['turned_genuine']:,} turned) and {a['impostor']:,} impostor pairs"
        every.append(f"| {name} | {_tar_cells(a)} |")
    ceilings: dict[str, str] = {}  # the ceilings after the students: one row per target (twins often share one)
    for name, r in table["runs"].items():
        if (t := r.get("selected_teacher_neurons_all_pairs")) is not None:
            ceilings.setdefault(_tar_cells(t), name)
    every += [f"| the teacher neurons {name} regresses | {tars} |" for tars, name in ceilings.items()]
    all_pairs = (
        "\n\nEvery pair of the photos of the identities of folds 0-4 with a face"
        f" ({table.get('all_pairs_photos', 0):,} photos: {counts}); each threshold is the one of that FAR over all"
        " the impostor pairs, and the turned genuine pairs (a face with an estimated yaw of"
        f" {TURNED:.0f} degrees or more) are measured at those same thresholds.\n\n" + "\n".join(every)
        if len(every) > 2
        else ""
    )
    return (
        "# Twins on held-out data\n\n"
        f"Made by `python -m training.studies.compare`. CelebA test split: the {table['pairs']} protocol pairs of folds"
        " 0-4 (the selection folds; 5-9 and LFW are kept for reported figures), each fold's threshold picked on the"
        " other four; the float student of each run's last checkpoint, fused as served, one pass (and a run's exported"
        f" ONNX where it has one). Turned pairs: the {table['turned_pairs']} of them whose more turned face has an"
        f" estimated yaw of {TURNED:.0f} degrees or more (training/data/landmarks.py), at the same thresholds."
        " Held-out: the pool's held-out identities (3,000 pairs), the run's last epoch; a published model is scored on"
        f" the first run's held-out pairs. Training-images cosine: {FIT_IMAGES} seeded training images of the run,"
        " plain view, no augmentation (close to the held-out cosine: the student underfits its target).\n\n"
        + "\n".join(rows)
        + all_pairs
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.studies.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<name>) with a trained checkpoint")
    parser.add_argument("--model", action="append", default=[], help="also a published student (manifest name)")
    parser.add_argument("--out", type=Path, default=None, help="write README.md and compare.json here")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    table = compare(args.runs, args.model)
    text = markdown(table)
    if args.out:
        write_table(args.out, "compare", table, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
