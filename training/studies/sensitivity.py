"""How much a student's answer moves when its crop moves a little: mirror, shifts, scale, turns.

``python -m training.studies.sensitivity GRAPH [GRAPH ...] [--out runs/sensitivity]`` runs each exported student
(ONNX, 64 px input) on the plain crops of ``IMAGES`` images of the pool's held-out identities (the default's run,
``runs/ensemble-deep9``) and on the same crops moved by each transform of :data:`MOVES` (bilinear, edges repeated,
as ``train.jitter`` moves them), and tabulates the mean cosine between the two outputs. A student whose answer moves
by about as much as the served crop moves with the detector's landmark noise (about 1 px) is what averaging passes
at serving time helps. Held-out images only: nothing here trains or tunes.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from training.data.feature_cache import onnx_runner
from training.evaluate import row_cosine
from training.paths import REPO
from training.studies import write_table
from training.studies.compare import holdout_set
from training.trainer import similarity_warp

log = logging.getLogger(__name__)

IMAGES = 800
# name -> (shift x px, shift y px, scale, degrees); "mirror" is the left-right flip
MOVES: dict[str, tuple[float, float, float, float]] = {
    "x 0.5 px": (0.5, 0.0, 1.0, 0.0),
    "x 1 px": (1.0, 0.0, 1.0, 0.0),
    "x 2 px": (2.0, 0.0, 1.0, 0.0),
    "y 1 px": (0.0, 1.0, 1.0, 0.0),
    "y 2 px": (0.0, 2.0, 1.0, 0.0),
    "scale 1.03": (0.0, 0.0, 1.03, 0.0),
    "scale 0.97": (0.0, 0.0, 0.97, 0.0),
    "turn 3 deg": (0.0, 0.0, 1.0, 3.0),
    "turn 6 deg": (0.0, 0.0, 1.0, 6.0),
}


def moved(crops: NDArray[np.uint8], dx: float, dy: float, scale: float, degrees: float) -> NDArray[np.uint8]:
    """``(N, S, S, 3)`` crops under one similarity transform about their centre, rounded back to uint8."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    n = len(x)
    out = similarity_warp(
        x, torch.full((n,), dx), torch.full((n,), dy), torch.full((n,), scale), torch.full((n,), math.radians(degrees))
    )
    return out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def sensitivity(graphs: list[Path], crops: NDArray[np.uint8]) -> dict[str, Any]:
    table: dict[str, Any] = {"images": len(crops), "graphs": {}}
    for graph in graphs:
        run = onnx_runner(graph)
        plain = run(crops)
        row = {"mirror": float(row_cosine(plain, run(np.ascontiguousarray(crops[:, :, ::-1]))).mean())}
        for name, move in MOVES.items():
            row[name] = float(row_cosine(plain, run(moved(crops, *move))).mean())
        table["graphs"][str(graph)] = row
        log.info("%s: %s", graph, row)
    return table


def markdown(table: dict[str, Any]) -> str:
    names = ["mirror", *MOVES]
    rows = [f"| graph | {' | '.join(names)} |", "|---|" + "--:|" * len(names)]
    rows += [f"| `{g}` | {' | '.join(f'{r[n]:.4f}' for n in names)} |" for g, r in table["graphs"].items()]
    return (
        "# How far a student's answer moves with its crop\n\n"
        "Made by `python -m training.studies.sensitivity`: the mean cosine between a graph's output on the plain"
        f" 64 px crop of {table['images']} images of the pool's held-out identities and on the same crop mirrored,"
        " shifted, scaled or turned about its centre (bilinear, edges repeated).\n\n" + "\n".join(rows) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.studies.sensitivity", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("graphs", nargs="+", type=Path, help="exported students (ONNX, 64 px input)")
    parser.add_argument("--out", type=Path, default=None, help="write README.md and sensitivity.json here")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    crops, _ = holdout_set(REPO / "runs" / "ensemble-deep9")
    table = sensitivity(args.graphs, crops[:IMAGES])
    text = markdown(table)
    if args.out:
        write_table(args.out, "sensitivity", table, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
