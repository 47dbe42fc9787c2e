"""The learning curve in training images at equal steps, with a fitted error law: what more faces would buy.

``python -m training.studies.curve runs/levers/compare.json RUN RUN RUN ... --out runs/curve-v2`` reads the twins
table of ``training.studies.compare`` (it trains and scores nothing itself) and the training-image count of each
run (``runs/<name>/train_data.json``), and fits, per held-out figure, the usual saturating law

    error(n) = floor + scale * (n / n_largest) ** -exponent

to the curve's points (n = training images; error = 1 - accuracy, 1 - AUC, or 1 - cosine to the target). The
exponent is found on a grid, floor and scale by least squares for each exponent (scale >= 0). Three points that
fall as images grow determine the three parameters exactly, so with three the fit is a reading of the curve's
bend, not a test of the law (the rms residual says how well it holds where there are more, or where a figure does
not fall); it says what the same net, recipe and steps would reach with unlimited images of the same kind (the floor),
and with two and four times the largest point.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.paths import REPO
from training.studies import write_table

EXPONENTS = np.linspace(0.05, 4.0, 791)  # the grid the exponent is searched on (step 0.005)

# figure name -> (where it sits in a compare.json entry, label of the value); the fit is on error = 1 - value
FIGURES: dict[str, tuple[tuple[str, str], str]] = {
    "holdout_error": (("holdout_1pass", "accuracy"), "held-out accuracy"),
    "holdout_1_auc": (("holdout_1pass", "auc"), "held-out AUC"),
    "holdout_cos_gap": (("holdout_1pass", "cos_to_teacher"), "held-out cosine to the target"),
    "folds_error": (("celeba_test_selection_folds", "accuracy"), "CelebA-test folds 0-4 accuracy"),
}


def fit_power_law(n: NDArray[np.floating], error: NDArray[np.floating]) -> dict[str, float]:
    """Least-squares ``error = floor + scale * (n / reference)**-exponent`` (scale >= 0; exponent on ``EXPONENTS``;
    ``reference`` = the largest n, so that ``scale`` is the error above the floor there and the fit is well
    conditioned)."""
    if len(n) < 3:
        raise ValueError(f"a saturating fit needs at least 3 curve points, got {len(n)}")
    reference = float(np.max(n))
    best: tuple[float, float, float, float] | None = None
    for exponent in EXPONENTS:
        x = (n / reference) ** -exponent
        design = np.stack([np.ones_like(x), x], axis=1)
        (floor, scale), *_ = np.linalg.lstsq(design, error, rcond=None)
        if scale < 0:  # a curve that rises with more images: the law does not apply, keep the flat fit
            floor, scale = float(error.mean()), 0.0
        residual = float(np.sum((floor + scale * x - error) ** 2))
        if best is None or residual < best[0] - 1e-15:
            best = (residual, float(floor), float(scale), float(exponent))
    assert best is not None
    residual, floor, scale, exponent = best
    rms = float(np.sqrt(residual / len(n)))
    return {"floor": floor, "scale": scale, "exponent": exponent, "reference": reference, "rms_residual": rms}


def predict(fit: dict[str, float], n: float) -> float:
    return float(fit["floor"] + fit["scale"] * (n / fit["reference"]) ** -fit["exponent"])


def curve(compare: dict[str, Any], names: list[str], runs: Path = REPO / "runs") -> dict[str, Any]:
    """The curve's points (sorted by training images) and the fit of every figure in ``FIGURES``."""
    missing = [name for name in names if name not in compare["runs"]]
    if missing:
        raise SystemExit(f"not in the compare table: {', '.join(missing)} (run training.studies.compare on them)")
    points = []
    for name in names:
        data = json.loads((runs / name / "train_data.json").read_text())
        entry = compare["runs"][name]
        point: dict[str, Any] = {"run": name, "images": int(data["images"]), "epochs": int(entry["epochs"])}
        for key, ((section, field), _) in FIGURES.items():
            point[key] = 1.0 - float(entry[section][field])
        point["train_cos_gap"] = 1.0 - float(entry["train_cos_to_teacher"])
        points.append(point)
    points.sort(key=lambda p: p["images"])
    if len({p["images"] for p in points}) != len(points):
        raise SystemExit("two curve points train on the same number of images")
    n = np.array([p["images"] for p in points], np.float64)
    largest = float(n[-1])
    fits = {}
    for key in FIGURES:
        fit = fit_power_law(n, np.array([p[key] for p in points]))
        fit["at_2x"] = predict(fit, 2 * largest)
        fit["at_4x"] = predict(fit, 4 * largest)
        fits[key] = fit
    return {"points": points, "fits": fits, "largest_images": int(largest)}


def render(result: dict[str, Any], source: str = "runs/levers/compare.json") -> str:
    """The markdown of :func:`curve`'s result; ``source`` is the twins table it was read from."""
    points, fits = result["points"], result["fits"]
    lines = [
        "# Learning curve in training images, equal steps",
        "",
        f"Made by `python -m training.studies.curve` from the twins table `{source}` (held-out",
        "identities of the pool, one pass; CelebA-test folds 0-4; LFW not used). Each run trains on a seeded share",
        "of the pool's training images for the same number of steps. Fit per figure: error = floor + scale x",
        "images^-exponent (three falling points are fit exactly: a reading of the bend, not a test of the law).",
        "",
        "| run | training images | epochs | held-out accuracy | held-out AUC | held-out cosine | training-images cosine"
        " | folds 0-4 accuracy |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in points:
        lines.append(
            f"| {p['run']} | {p['images']:,} | {p['epochs']} | {100 * (1 - p['holdout_error']):.2f} % "
            f"| {1 - p['holdout_1_auc']:.4f} | {1 - p['holdout_cos_gap']:.4f} | {1 - p['train_cos_gap']:.4f} "
            f"| {100 * (1 - p['folds_error']):.2f} % |"
        )
    largest = result["largest_images"]
    lines += [
        "",
        f"| figure (fitted on 1 - it) | exponent | limit (unlimited images) | at 2x ({2 * largest:,}) "
        f"| at 4x ({4 * largest:,}) | at {largest:,} (measured) | rms residual |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for key, (_, label) in FIGURES.items():
        fit = fits[key]
        measured = next(p[key] for p in points if p["images"] == largest)
        lines.append(
            f"| {label} | {fit['exponent']:.2f} | {_pct(key, fit['floor'])} | {_pct(key, fit['at_2x'])} "
            f"| {_pct(key, fit['at_4x'])} | {_pct(key, measured)} | {fit['rms_residual']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _pct(key: str, error: float) -> str:
    """An error figure shown as the quantity it is the error of (accuracy in %, AUC and cosine as fractions)."""
    return f"{100 * (1 - error):.2f} %" if key.endswith("_error") else f"{1 - error:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.studies.curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("compare", type=Path, help="compare.json written by python -m training.studies.compare")
    parser.add_argument("runs", nargs="+", help="the curve's run names (at least 3, as in the compare table)")
    parser.add_argument("--out", type=Path, required=True, help="write README.md and curve.json here")
    args = parser.parse_args(argv)
    result = curve(json.loads(args.compare.read_text()), args.runs)
    text = render(result, str(args.compare))
    write_table(args.out, "curve", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
