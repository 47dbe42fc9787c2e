"""LFW accuracy against cost: one point per model at its served ms/face (ORT, 2 threads, batch 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

MOBILEID_PAPER_ACCURACY = 97.32  # MobileID's released student on LFW (AAAI 2016); no timing on our machine
COLOURS = {"teacher": "tab:blue", "ensemble": "tab:purple", "student": "tab:orange"}


def points(models: list[dict[str, Any]]) -> list[tuple[str, str, float, float]]:
    """(label, kind, served ms/face at 2 threads batch 1, LFW accuracy %) of every model with both numbers."""
    found = []
    for model in models:
        stats = model["timing"].get("t2", {}).get("b1", {}).get("served")
        accuracy = model.get("lfw", {}).get("accuracy")
        if stats and accuracy is not None:
            found.append((model["label"], model["kind"], stats["median_ms"], 100 * accuracy))
    return found


def accuracy_vs_speed(models: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Write the scatter plot to ``path`` (PNG)."""
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    seen: set[str] = set()
    for index, (label, kind, ms, accuracy) in enumerate(sorted(points(models), key=lambda p: p[2])):
        legend = kind if kind not in seen else None
        seen.add(kind)
        axes.scatter(ms, accuracy, s=46, color=COLOURS.get(kind, "tab:gray"), zorder=3, label=legend)
        # Alternate above/below: neighbours on the x axis (T1 and the ensemble) would print over each other.
        axes.annotate(
            label, (ms, accuracy), textcoords="offset points", xytext=(6, 5 if index % 2 else -11), fontsize=8
        )
    axes.axhline(MOBILEID_PAPER_ACCURACY, linestyle="--", color="tab:red", linewidth=1)
    axes.annotate(
        f"MobileID paper student ({MOBILEID_PAPER_ACCURACY}%)",
        (0.01, MOBILEID_PAPER_ACCURACY),
        xycoords=("axes fraction", "data"),
        textcoords="offset points",
        xytext=(0, 4),
        fontsize=8,
        color="tab:red",
    )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.margins(x=0.25, y=0.08)
    if seen:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("ms per face, as served (ONNX Runtime, 2 threads, batch 1; log scale)")
    axes.set_ylabel("LFW accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
