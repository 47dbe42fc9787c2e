"""Human-readable results of a run: ``results.md`` (tables) and ``roc.png`` (LFW ROC, teachers vs student)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _row(name: str, r: dict, extra: str = "") -> str:
    return (f"| {name} | {100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f} | {r['roc_auc']:.5f} "
            f"| {100 * r['tar_at_far_1e3']:.2f} |{extra}")


def write_run_report(run_dir: Path) -> Path:
    results = json.loads((run_dir / "results.json").read_text())
    lines = [f"# Run `{results['name']}` (config {results['config_hash']})", "",
             f"Student: {results['params']:,} parameters, ONNX {results['onnx_bytes'] / 1e6:.2f} MB, "
             f"{results['selected_neurons']} selected neurons of {', '.join(results['teachers'])}, "
             f"flip-averaged: {results['flip_average']}.", "",
             f"LFW, official pairs.txt ({results['lfw']['pairs']:,} pairs), 10-fold (threshold picked on 9 folds, scored on the 10th):", "",
             "| model | accuracy % | ROC AUC | TAR % @ FAR 1e-3 |", "|---|---|---|---|",
             _row("student", results["lfw"]),
             _row("teachers' selected neurons (target)", results["lfw_selected_teacher_neurons"])]
    teachers = run_dir / "teachers_lfw.json"
    if teachers.exists():
        lines += [_row(f"teacher {k}", v) for k, v in json.loads(teachers.read_text()).items()]
    lines += ["", "Training history (held-out CelebA-wild identities, never LFW):", "",
              "| epoch | loss | minutes | cos to teacher | held-out acc | held-out AUC |", "|---|---|---|---|---|---|"]
    lines += [f"| {h['epoch']} | {h['loss']:.4f} | {h['minutes']:.1f} | {h['holdout_cos_to_teacher']:.4f} "
              f"| {100 * h['holdout_accuracy']:.2f} | {h['holdout_auc']:.4f} |" for h in results["history"]]
    path = run_dir / "results.md"
    path.write_text("\n".join(lines) + "\n")
    plot_roc(run_dir)
    return path


def plot_roc(run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.load(run_dir / "roc.npz")
    names = sorted({k.split("|")[0] for k in data.files})
    fig, ax = plt.subplots(figsize=(6, 5))
    for name in names:
        ax.plot(np.maximum(data[f"{name}|far"], 1e-4), data[f"{name}|tar"], label=name)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0.5, 1.001)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("LFW ROC (6,000 pairs)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "roc.png", dpi=100)
    plt.close(fig)
