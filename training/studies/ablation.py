"""Ablations: several variants of one base run, trained side by side, in one summary table.

``python -m training.studies.ablation --config training/configs/studies/ablation.yaml`` trains one student per
variant (select -> train -> export -> evaluate) and writes ``runs/<name>/summary.{json,md}``.

* ``studies/ablation.yaml``: the variants differ only in which teacher neurons the student regresses: all of them,
  the MobileID energy selection (with and without its redundancy term), or a random subset of the same size.
* ``studies/learning-curve.yaml``: the variants differ only in how many training images (and views) the student
  sees, at the same number of training steps.

Decisions are taken on the held-out CelebA-wild identities; LFW accuracy is reported beside them, never used
to choose.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from training.config import load_config
from training.paths import REPO
from training.stages.evaluate import stage_evaluate
from training.stages.export import stage_export
from training.stages.run import Run
from training.stages.select import stage_select
from training.stages.train import stage_train

log = logging.getLogger(__name__)


def variants(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Each variant's overrides of the spec's ``base`` config: its run name, the ``common`` ones, its own."""
    return {
        name: [f"name={spec['name']}-{name}", *spec["common"], *overrides]
        for name, overrides in spec["variants"].items()
    }


def run_variant(base: Path, overrides: list[str], runs: Path) -> dict[str, Any]:
    run = Run(load_config(base, overrides), runs)
    if not (run.dir / "results.json").exists():
        stage_select(run)
        stage_train(run)
        stage_export(run)
        stage_evaluate(run)
    results = json.loads((run.dir / "results.json").read_text())
    last = results["history"][-1]
    return {
        "name": run.cfg.name,
        "train_data": results.get("train_data"),
        "epochs": len(results["history"]),
        "method": run.cfg.selection.method,
        "neurons": results["selected_neurons"],
        "redundancy": run.cfg.selection.redundancy,
        "params": results["params"],
        "holdout_accuracy": last["holdout_accuracy"],
        "holdout_auc": last["holdout_auc"],
        "holdout_cos_to_teacher": last["holdout_cos_to_teacher"],
        "lfw_accuracy": results["lfw"]["accuracy"],
        "lfw_std": results["lfw"]["accuracy_std"],
        "lfw_auc": results["lfw"]["roc_auc"],
        "target_lfw_accuracy": results["lfw_selected_teacher_neurons"]["accuracy"],
    }


def _selection(row: dict[str, Any]) -> str:
    no_redundancy = row["method"] == "energy" and not row["redundancy"]
    return f"{row['method']}{' (no redundancy)' if no_redundancy else ''}"


def write_summary(rows: list[dict[str, Any]], out: Path, title: str, budget: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    lines = [
        f"# {title} ({budget})",
        "",
        "Held-out = CelebA-wild identities never trained on (used for decisions); LFW = test only.",
        "",
        "| variant | training images x views | epochs | selection | neurons | student params | held-out acc % "
        "| held-out AUC | cos to target | LFW acc % | LFW AUC | teacher neurons' own LFW acc % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        data = r.get("train_data")
        size = f"{data['images']:,} x {data['views']}" if data else "-"
        lines.append(
            f"| {r['name']} | {size} | {r.get('epochs', '-')} | {_selection(r)} | {r['neurons']} | {r['params']:,} "
            f"| {100 * r['holdout_accuracy']:.2f} | {r['holdout_auc']:.4f} | {r['holdout_cos_to_teacher']:.3f} "
            f"| {100 * r['lfw_accuracy']:.2f} ± {100 * r['lfw_std']:.2f} | {r['lfw_auc']:.4f} "
            f"| {100 * r['target_lfw_accuracy']:.2f} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=REPO / "training/configs/studies/ablation.yaml")
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = yaml.safe_load(args.config.read_text())
    base = REPO / spec["base"]
    rows = []
    for name, overrides in variants(spec).items():
        log.info("ablation variant %s: %s", name, spec["variants"][name])
        rows.append(run_variant(base, overrides, args.runs))
        write_summary(rows, args.runs / spec["name"], spec.get("title", "Ablation"), spec["budget"])


if __name__ == "__main__":
    main()
