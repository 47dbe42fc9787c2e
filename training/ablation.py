"""Neuron-selection ablation: the same short training budget for several selections, side by side.

``python -m training.ablation --config training/configs/ablation.yaml`` trains one student per variant
(select -> train -> export -> evaluate) and writes ``runs/<name>/summary.{json,md}``. The variants differ
only in which teacher neurons the student regresses: all of them, the MobileID energy selection (with and
without its redundancy term), or a random subset of the same size. Decisions are taken on the held-out
CelebA-wild identities; LFW accuracy is reported beside them, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml

from training.config import load_config
from training.paths import REPO
from training.pipeline import Run
from training.student_stages import stage_evaluate, stage_export, stage_select, stage_train

log = logging.getLogger(__name__)


def run_variant(base: Path, overrides: list[str], runs: Path) -> dict:
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


def write_summary(rows: list[dict], out: Path, budget: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    lines = [
        f"# Neuron-selection ablation ({budget})",
        "",
        "Held-out = CelebA-wild identities never trained on (used for decisions); LFW = test only.",
        "",
        "| variant | selection | neurons | student params | held-out acc % | held-out AUC | cos to target "
        "| LFW acc % | LFW AUC | teacher neurons' own LFW acc % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['method']}{' (no redundancy)' if r['method'] == 'energy' and not r['redundancy'] else ''} "
        f"| {r['neurons']} | {r['params']:,} | {100 * r['holdout_accuracy']:.2f} | {r['holdout_auc']:.4f} "
        f"| {r['holdout_cos_to_teacher']:.3f} | {100 * r['lfw_accuracy']:.2f} ± {100 * r['lfw_std']:.2f} "
        f"| {r['lfw_auc']:.4f} | {100 * r['target_lfw_accuracy']:.2f} |"
        for r in rows
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=REPO / "training/configs/ablation.yaml")
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = yaml.safe_load(args.config.read_text())
    base = REPO / spec["base"]
    rows = []
    for name, overrides in spec["variants"].items():
        log.info("ablation variant %s: %s", name, overrides)
        rows.append(run_variant(base, [f"name={spec['name']}-{name}", *spec["common"], *overrides], args.runs))
        write_summary(rows, args.runs / spec["name"], spec["budget"])


if __name__ == "__main__":
    main()
