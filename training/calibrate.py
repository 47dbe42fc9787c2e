"""``python -m training.calibrate --model NAME``: operating points of a published model, calibrated off LFW.

Every photo of the CelebA test split is embedded through the service's own engine (``service.engine``: decode,
YuNet, main face, crop, ONNX Runtime). On the identities of protocol folds 0-4, every pair of their photos gives
the genuine and impostor scores the thresholds are picked on:

* for FAR 1e-2, 1e-3 and 1e-4, the lowest threshold (4 decimals, rounded up) that accepts at most that share of
  the impostor pairs;
* the default, the threshold of best balanced accuracy (TAR + 1 - FAR) / 2 over those pairs: the best single
  "same person or not" answer when a match and a non-match are equally likely.

Each threshold is then measured on the identities of folds 5-9 (all their pairs, and their protocol pairs) and on
LFW's 6,000 pairs at that fixed threshold. The results go to ``bench/results/calibration/<model>.json`` and into
the model's manifest entry (``operating_points``, ``threshold``), which ``/info`` shows and ``far=`` reads.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from service.config import Settings
from service.engine import Engine, ModelCard, model_sha256
from service.manifest import (
    PREPROCESSING_VERSION,
    DetectorSpec,
    EmbeddingModel,
    LfwAtThreshold,
    LfwResult,
    Manifest,
    Measured,
    OperatingPoint,
    OperatingPoints,
    PairSet,
    load_manifest,
    save_manifest,
)
from service.sessions import SessionPool, load_component, load_detector, session_options
from training.data.calibration_sets import (
    CALIBRATION_FOLDS,
    CELEBA_TEST_IMAGES,
    HELD_OUT_FOLDS,
    CelebaTest,
    lfw_protocol,
    pair_scores,
    read_celeba_test,
)
from training.evaluate import Pairs, ten_fold
from training.operating_points import PairScores, all_pair_scores, balanced_threshold, rates, threshold_at_far
from training.paths import CACHE, DATA, MODELS, REPO
from training.report import replace_section
from training.served_embeddings import Embedded, embed_photos

log = logging.getLogger(__name__)

FARS = (1e-2, 1e-3, 1e-4)
RESULTS = REPO / "bench" / "results" / "calibration"
README_START, README_END = "<!-- calibration:start -->", "<!-- calibration:end -->"
DEFAULT_RULE = (
    "balanced-accuracy optimum: the threshold maximising (TAR + 1 - FAR) / 2 over every pair of the calibration "
    "identities' photos"
)


class Half:
    """One half of the split's identities: its photos' embeddings, every pair's score, its protocol pairs."""

    def __init__(self, split: CelebaTest, embedded: Embedded, folds: tuple[int, ...], description: str) -> None:
        photos = split.photos_in(folds)
        kept = photos & embedded.found
        self.scores: PairScores = all_pair_scores(embedded.embeddings[kept], split.identities[kept])
        in_folds = np.isin(split.pairs.fold, folds)
        self.protocol = Pairs(*(getattr(split.pairs, f)[in_folds] for f in ("left", "right", "same", "fold")))
        self.protocol_scores = pair_scores(embedded.embeddings, embedded.found, self.protocol)
        self.pair_set = PairSet(
            description=description,
            identities=len(np.unique(split.identities[photos])),
            photos=int(photos.sum()),
            photos_without_face=int((photos & ~embedded.found).sum()),
            genuine_pairs=len(self.scores.genuine),
            impostor_pairs=len(self.scores.impostor),
        )

    def measured(self, threshold: float) -> Measured:
        r = rates(self.scores, threshold)
        return Measured(
            tar=r.tar, far=r.far, genuine_accepted=r.genuine_accepted, impostor_accepted=r.impostor_accepted
        )

    def protocol_accuracy(self, threshold: float) -> float:
        return float(np.mean((self.protocol_scores >= threshold) == self.protocol.same))


def lfw_at(scores: NDArray[np.float64], pairs: Pairs, found: int, threshold: float) -> LfwAtThreshold:
    """LFW's protocol pairs at a fixed threshold: accuracy (and its spread over the 10 folds), TAR, FAR."""
    correct = (scores >= threshold) == pairs.same
    folds = [float(np.mean(correct[pairs.fold == k])) for k in np.unique(pairs.fold)]
    return LfwAtThreshold(
        accuracy=float(np.mean(correct)),
        fold_accuracy_std=float(np.std(folds)),
        tar=float(np.mean(scores[pairs.same] >= threshold)),
        far=float(np.mean(scores[~pairs.same] >= threshold)),
        pairs=len(scores),
        photos_without_face=found,
    )


def calibrate(engine: Engine, images: Path) -> tuple[OperatingPoints, dict[str, object]]:
    """Operating points of the engine's model, and the LFW 10-fold figure through the same engine."""
    split = read_celeba_test()
    # Cached per model file and crop version; delete .cache/calibration after other changes to the served path.
    key = f"{engine.card.sha256[:16]}-p{PREPROCESSING_VERSION}"
    embedded = embed_photos(engine, images, split.files, CACHE / "calibration" / f"{key}-celeba_test.npz")
    what = "CelebA test split (../shared/data/celeba_test), every pair of the photos of the identities of protocol"
    cal = Half(split, embedded, CALIBRATION_FOLDS, f"{what} folds 0-4")
    held = Half(split, embedded, HELD_OUT_FOLDS, f"{what} folds 5-9")
    lfw_photos, lfw_pairs = lfw_protocol()
    lfw = embed_photos(engine, DATA, lfw_photos, CACHE / "calibration" / f"{key}-lfw.npz")
    lfw_scores = pair_scores(lfw.embeddings, lfw.found, lfw_pairs)
    lfw_missing = int((~lfw.found).sum())

    def point(threshold: float, far: float | None) -> OperatingPoint:
        return OperatingPoint(
            far=far,
            threshold=threshold,
            calibration=cal.measured(threshold),
            held_out=held.measured(threshold),
            held_out_protocol_accuracy=held.protocol_accuracy(threshold),
            lfw=lfw_at(lfw_scores, lfw_pairs, lfw_missing, threshold),
        )

    points = OperatingPoints(
        tool=f"python -m training.calibrate --model {engine.card.name}",
        calibrated_on=cal.pair_set,
        held_out=held.pair_set,
        default_rule=DEFAULT_RULE,
        default=point(balanced_threshold(cal.scores.genuine, cal.scores.impostor), None),
        rates=[point(threshold_at_far(cal.scores.impostor, far), far) for far in FARS],
    )
    lfw_ten_fold = ten_fold(lfw_scores, lfw_pairs).to_dict()
    extra = {"lfw_ten_fold_served": lfw_ten_fold, "lfw_photos": len(lfw_photos), "lfw_photos_without_face": lfw_missing}
    return points, extra


def calibration_engine(manifest_path: Path, detector: DetectorSpec, name: str, spec: EmbeddingModel) -> Engine:
    """The service's engine for a model entry that may not be in the manifest yet (``stage_publish``); its files
    are resolved and sha256-checked beside ``manifest_path`` as at start-up."""
    settings = Settings(manifest=manifest_path, model=name, log_level="WARNING")
    pool = SessionPool(manifest_path, session_options(settings.threads, settings.ort_spinning))
    components = [load_component(pool, component) for component in spec.components]
    card = ModelCard(name, spec.version, model_sha256(spec), spec.dim, spec.threshold, spec)
    return Engine(load_detector(pool, detector), components, card, settings)


def calibration_note(points: OperatingPoints) -> str:
    """The manifest's ``threshold_calibration`` for a calibrated default."""
    return (
        f"{DEFAULT_RULE}, on the CelebA test split identities of protocol folds 0-4 (not LFW); FAR operating "
        f"points in operating_points ({points.tool})"
    )


def publish(manifest_path: Path, name: str, points: OperatingPoints, lfw: LfwResult | None = None) -> Manifest:
    """Write the operating points and the default threshold into the model's manifest entry (validated); with
    ``lfw``, its LFW figure too (a served variant of another entry's graph has no training run of its own)."""
    manifest = load_manifest(manifest_path)
    update: dict[str, object] = {
        "threshold": points.default.threshold,
        "threshold_calibration": calibration_note(points),
        "operating_points": points,
    }
    if lfw is not None:
        update["lfw"] = lfw
    spec = manifest.models[name].model_copy(update=update)
    updated = manifest.model_copy(update={"models": {**manifest.models, name: spec}})
    save_manifest(updated, manifest_path)
    return updated


def write_results(name: str, sha256: str, points: OperatingPoints, extra: dict[str, object]) -> Path:
    """``bench/results/calibration/<name>.json`` (everything) and ``.md`` (the table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"model": name, "sha256": sha256, "operating_points": points.model_dump(mode="json"), **extra}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    path.with_suffix(".md").write_text(table(name, points, extra) + "\n")
    return path


def table(name: str, points: OperatingPoints, extra: dict[str, object]) -> str:
    """Markdown table of the operating points."""
    cal, held = points.calibrated_on, points.held_out
    ten = extra["lfw_ten_fold_served"]
    assert isinstance(ten, dict)
    lines = [
        f"# Operating points of {name}",
        "",
        f"Calibrated on {cal.description}: {cal.identities} identities, {cal.photos} photos "
        f"({cal.photos_without_face} without a face found), {cal.genuine_pairs:,} genuine and "
        f"{cal.impostor_pairs:,} impostor pairs.",
        f"Measured on {held.description}: {held.identities} identities, {held.photos} photos "
        f"({held.photos_without_face} without a face), {held.genuine_pairs:,} genuine and "
        f"{held.impostor_pairs:,} impostor pairs. Default: {points.default_rule}.",
        f"LFW 10-fold through the same engine (threshold picked per fold on LFW, for reference only): "
        f"{ten['accuracy']:.2%} +/- {ten['accuracy_std']:.2%}.",
        "",
        "| operating point | threshold | calibration FAR (accepted impostors) | held-out TAR | held-out FAR "
        "(accepted impostors) | held-out protocol accuracy | LFW accuracy at it | LFW TAR | LFW FAR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in [points.default, *points.rates]:
        label = "default" if p.far is None else f"FAR {p.far:g}"
        lines.append(
            f"| {label} | {p.threshold:.4f} | {p.calibration.far:.2e} ({p.calibration.impostor_accepted:,}) | "
            f"{p.held_out.tar:.2%} | {p.held_out.far:.2e} ({p.held_out.impostor_accepted:,}) | "
            f"{p.held_out_protocol_accuracy:.2%} | {p.lfw.accuracy:.2%} +/- {p.lfw.fold_accuracy_std:.2%} | "
            f"{p.lfw.tar:.2%} | {p.lfw.far:.2%} |"
        )
    return "\n".join(lines)


def readme_section(name: str, points: OperatingPoints, extra: dict[str, object]) -> str:
    """README block between the calibration markers: the default model's operating points."""
    cal, held = points.calibrated_on, points.held_out
    ten = extra["lfw_ten_fold_served"]
    assert isinstance(ten, dict)
    rows = [
        f"| {'default' if p.far is None else f'`far={p.far:g}`'} | {p.threshold:.4f} | {p.calibration.far:.1e} | "
        f"{p.held_out.tar:.1%} | {p.held_out.far:.1e} | {p.lfw.accuracy:.2%} |"
        for p in [points.default, *points.rates]
    ]
    return "\n".join(
        [
            README_START,
            f"<!-- generated by `{points.tool}` from bench/results/calibration/{name}.json; do not edit -->",
            "",
            f"Operating points of `{name}`, calibrated on every pair of the CelebA test split's photos of "
            f"protocol folds 0-4 ({cal.identities} identities, {cal.genuine_pairs:,} genuine and "
            f"{cal.impostor_pairs:,} impostor pairs) and measured on folds 5-9 ({held.identities} other identities, "
            f"{held.genuine_pairs:,} genuine and {held.impostor_pairs:,} impostor pairs). Default: "
            f"{points.default_rule}. LFW at the same fixed thresholds (nothing picked on LFW), beside its "
            f"10-fold figure through the same engine (each fold's threshold picked on the other nine): "
            f"{ten['accuracy']:.2%} +/- {ten['accuracy_std']:.2%}.",
            "",
            "| operating point | threshold | FAR (calibration) | TAR (held out) | FAR (held out) | LFW accuracy |",
            "|---|---|---|---|---|---|",
            *rows,
            README_END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", required=True, help="manifest model name (repeatable)")
    parser.add_argument("--manifest", type=Path, default=MODELS / "manifest.json")
    parser.add_argument("--images", type=Path, default=CELEBA_TEST_IMAGES, help="the CelebA test split's photos")
    parser.add_argument("--no-publish", action="store_true", help="write the results file only")
    parser.add_argument(
        "--served-lfw",
        action="store_true",
        help="also publish the LFW 10-fold figure through the engine as the entry's lfw (for a served variant, "
        "e.g. test-time shifts, of a graph whose training run measured it without them)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in args.model:
        manifest = load_manifest(args.manifest)
        engine = calibration_engine(args.manifest, manifest.detector, name, manifest.models[name])
        points, extra = calibrate(engine, args.images)
        path = write_results(name, engine.card.sha256, points, extra)
        log.info("%s: %s", name, path)
        if not args.no_publish:
            served = LfwResult.model_validate(extra["lfw_ten_fold_served"]) if args.served_lfw else None
            manifest = publish(args.manifest, name, points, served)
            if name == manifest.default_model:
                replace_section(REPO / "README.md", README_START, README_END, readme_section(name, points, extra))
        print(table(name, points, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
