"""Rebuild a model from a clean checkout: every round of its lineage, in order, then compare with what was published.

``python -m training reproduce mobileid-ensemble-int8`` reads the model's run from ``models/manifest.json``, follows
``train.init_from`` back to the round that started from scratch, and runs every stage of every round (teachers,
align, features, select, train, export, evaluate) into a scratch folder (``--runs``, default
``$MOBILEID_CACHE/reproduce``; a config's own round goes to ``runs/``), each round warm-started from the rebuilt
one before it. Rounds stop on their epochs, never on wall-clock time (``train.max_minutes`` is lifted), and every
stage resumes where it stopped, so an interrupted rebuild is continued by running the same command again.
``python -m training reproduce CONFIG.yaml`` does the same for a config's lineage (this is how a new model is made;
``--publish`` then publishes it).

A rebuild takes longer than a machine may live (the default's: about 6 hours of training and 1.5 of teacher views
on 2 cores). ``--carry DIR`` (``runs/rebuild/<model>`` in the repository) keeps a copy of every round's checkpoint
there, each epoch, and resumes from it: commit that folder, and the same command on a fresh clone on another
machine recomputes the caches (deterministic) and goes on from the last epoch carried. A finished round's carried
checkpoint holds the student's weights only (about 1.2 MB); the round in progress also its optimizer state. A
round that was finished on an earlier machine runs only up to its train stage (which restores it): later rounds
need its neurons and weights, not its export or LFW scores.
``DIR/README.md`` says how far the rebuild has come.

The comparison at the end: the same student architecture, the same selected neurons and parameter count; the held-
out scores of the last epoch and LFW within ``TOLERANCE`` (CPU training is seeded but not bit-exact across machines
and thread counts).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.config import RunConfig, load_config
from training.paths import CACHE, MODELS, REPO, shown

if TYPE_CHECKING:
    from training.stages.run import Run

log = logging.getLogger(__name__)

STAGES = ["teachers", "align", "features", "select", "train", "export", "evaluate"]
# How far a rebuilt model may land from the published one and still count as the same model.
TOLERANCE = {
    "lfw_accuracy": 0.005,
    "holdout_1pass_cos_to_teacher": 0.005,
    "holdout_1pass_auc": 0.003,
    "holdout_1pass_accuracy": 0.01,
}


def _find_config(run_name: str, configs: Path) -> Path:
    for path in sorted(configs.rglob("*.yaml")):
        try:
            if load_config(path).name == run_name:
                return path
        except (ValueError, TypeError, OSError):
            continue  # a study spec (training.studies.ablation), not a run config
    raise FileNotFoundError(f"no config under {configs} names run {run_name!r}")


def lineage(target: str, configs: Path = REPO / "training" / "configs") -> list[tuple[Path, RunConfig]]:
    """The configs of a model's rounds, the round trained from scratch first.

    ``target`` is a model of ``models/manifest.json`` (its committed run folders' saved configs are used) or a
    config file (parents are found among ``configs`` by run name)."""
    if target.endswith((".yaml", ".yml")):
        path: Path | None = Path(target)
        committed = False
    else:
        models = json.loads((MODELS / "manifest.json").read_text())["models"]
        if target not in models:
            raise KeyError(f"{target!r} is not a model of models/manifest.json; known: {sorted(models)}")
        run = models[target].get("provenance", {}).get("run")
        if not run:
            raise ValueError(f"{target} records no training run: it cannot be rebuilt here")
        path, committed = REPO / "runs" / run / "config.yaml", True
    chain: list[tuple[Path, RunConfig]] = []
    while path is not None:
        cfg = load_config(path)
        chain.append((path, cfg))
        parent = cfg.train.init_from
        if parent is None:
            path = None
        else:
            name = Path(parent).name
            path = REPO / "runs" / name / "config.yaml" if committed else _find_config(name, configs)
        if len(chain) > 50:
            raise RuntimeError("train.init_from forms a cycle")
    return chain[::-1]


def rebuild(
    chain: list[tuple[Path, RunConfig]],
    root: Path,
    *,
    target: str,
    publish: bool = False,
    threads: int | None = None,
    carry: Path | None = None,
    last_root: Path | None = None,
) -> Run:
    """Run every stage of every round of ``target``'s ``chain`` into ``root`` (the last round into ``last_root``
    when given; training on ``threads`` torch threads when given, else each config's own; checkpoints also carried
    in ``carry/<round>/``); returns the last round."""
    from training.stages import run_stage
    from training.stages.run import Run

    rows = write_progress(chain, carry, target) if carry is not None else []
    carried = {name: done >= epochs for name, done, epochs in rows}
    previous: Run | None = None
    for k, (path, cfg) in enumerate(chain, 1):
        cfg = dataclasses.replace(
            cfg,
            train=dataclasses.replace(
                cfg.train,
                max_minutes=None,
                init_from=str(previous.dir) if previous else None,
                threads=threads or cfg.train.threads,
            ),
        )
        log.info("round %d/%d: %s (%s)", k, len(chain), cfg.name, path)
        where = (last_root or root) if k == len(chain) else root
        run = Run(cfg, where, carry=carry / cfg.name if carry else None)
        for stage in round_stages(last=k == len(chain), carried=carried.get(cfg.name, False), publish=publish):
            log.info("  stage %s", stage)
            run_stage(stage, run)
            if carry is not None and stage == "select":
                carry_selection(run.dir, carry / cfg.name)
            if carry is not None and stage == "train":
                write_progress(chain, carry, target)
        previous = run
    assert previous is not None
    return previous


def carry_selection(run_dir: Path, carried: Path) -> None:
    """Keep the round's selected neurons beside its carried checkpoint, or check them against the ones kept: a
    checkpoint regresses the neurons it was trained on, so a selection that came out otherwise on this machine
    must stop the rebuild, not be trained on silently."""
    ours = json.loads((run_dir / "selection.json").read_text())["selected"]
    kept = carried / "selection.json"
    if not kept.exists():
        carried.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps({"selected": ours}) + "\n")
        return
    theirs = json.loads(kept.read_text())["selected"]
    if theirs != ours:
        differ = sorted(set(theirs) ^ set(ours))
        raise RuntimeError(
            f"{run_dir.name}: this machine selected other neurons than the carried checkpoint was trained on "
            f"({len(differ)} differ: {differ[:10]}); the carried rounds from here on cannot be resumed"
        )


def round_stages(last: bool, carried: bool, publish: bool) -> list[str]:
    """The stages a round runs: all of them (and ``publish`` for the last round when asked); a round that is not
    the last and was trained on an earlier machine (``carried``) only up to its train stage, which restores it: the
    next round needs its neurons and weights, not its export or its scores."""
    if carried and not last:
        return STAGES[: STAGES.index("train") + 1]
    return STAGES + (["publish"] if publish and last else [])


def progress(chain: list[tuple[Path, RunConfig]], carry: Path) -> list[tuple[str, int, int]]:
    """(round, epochs carried, epochs of the round) for every round of ``chain``."""
    import torch

    rows = []
    for _, cfg in chain:
        ckpt = carry / cfg.name / "checkpoint.pt"
        done = int(torch.load(ckpt, weights_only=False)["epoch"]) if ckpt.exists() else 0
        rows.append((cfg.name, done, cfg.train.epochs))
    return rows


def write_progress(chain: list[tuple[Path, RunConfig]], carry: Path, target: str) -> list[tuple[str, int, int]]:
    """``carry/README.md``: how far the carried rebuild of ``target`` has come, round by round; returns the rows
    of :func:`progress` it was written from."""
    rows = progress(chain, carry)
    carry.mkdir(parents=True, exist_ok=True)
    where = shown(carry.resolve())
    table = "\n".join(f"| {k} | `{name}` | {done} / {epochs} |" for k, (name, done, epochs) in enumerate(rows, 1))
    total, done = sum(r[2] for r in rows), sum(r[1] for r in rows)
    finished = done == total
    (carry / "README.md").write_text(
        f"# {'A finished rebuild' if finished else 'A rebuild in progress'}: {chain[-1][1].name}\n\n"
        "Checkpoints carried by `python -m training reproduce` (training/reproduce.py). To go on from here in a fresh\n"
        f"clone: `MOBILEID_CACHE=... .venv/bin/python -m training reproduce {target} --carry {where}`.\n"
        "Written by the command; do not edit.\n\n"
        f"{done} of {total} epochs trained.\n\n| round | run | epochs carried |\n|--:|---|--:|\n{table}\n"
        + (
            "\nThe comparison with the published model, written at the end of the command: `reproduce.md`.\n"
            if finished
            else ""
        )
    )
    log.info("carried in %s: %d of %d epochs", carry, done, total)
    return rows


HELD_OUT = ("holdout_1pass_cos_to_teacher", "holdout_1pass_auc", "holdout_1pass_accuracy")


class _Table:
    """A comparison table in markdown (what | published | rebuilt | within) and whether every row is within."""

    def __init__(self, what: str = "what") -> None:
        self.rows, self.ok = [f"| {what} | published | rebuilt | within |", "|---|---|---|---|"], True

    def row(self, what: str, a: object, b: object, same: bool) -> None:
        self.ok &= same
        self.rows.append(f"| {what} | {a} | {b} | {'yes' if same else '**no**'} |")

    def held_out(self, theirs: dict[str, float], ours: dict[str, float], suffix: str = "") -> None:
        """One row per held-out score (``HELD_OUT``) that ``theirs`` has, within ``TOLERANCE``."""
        for key in (k for k in HELD_OUT if k in theirs):
            a, b = theirs[key], ours[key]
            self.row(
                f"held-out {key.removeprefix('holdout_1pass_')}{suffix}",
                f"{a:.4f}",
                f"{b:.4f}",
                abs(a - b) <= TOLERANCE[key],
            )


def compare(rebuilt: Path, published: Path) -> tuple[bool, list[str]]:
    """Rows of a comparison table (rebuilt vs published run folder) and whether every row is within tolerance."""
    ours, theirs = (json.loads((d / "results.json").read_text()) for d in (rebuilt, published))
    table = _Table()
    arch = [load_config(d / "config.yaml").student for d in (published, rebuilt)]
    table.row("student architecture", "", "", dataclasses.asdict(arch[0]) == dataclasses.asdict(arch[1]))
    sel = [json.loads((d / "selection.json").read_text())["selected"] for d in (published, rebuilt)]
    table.row("selected neurons", len(sel[0]), len(sel[1]), sel[0] == sel[1])
    table.row("parameters", theirs["params"], ours["params"], theirs["params"] == ours["params"])
    a, b = theirs["lfw"]["accuracy"], ours["lfw"]["accuracy"]
    table.row("LFW accuracy", f"{a:.4f}", f"{b:.4f}", abs(a - b) <= TOLERANCE["lfw_accuracy"])
    last = [json.loads((d / "history.json").read_text())[-1] for d in (published, rebuilt)]
    table.held_out(last[0], last[1])
    return table.ok, table.rows


def side_by_side(run: Run, published_graph: Path, published_run: Path) -> tuple[bool, list[str]]:
    """The published and the rebuilt graph scored in one process on the same held-out crops (this machine's view
    cache, one pass), each against its own run's teacher targets: a comparison of the two models that does not
    rest on numbers measured by an older version of the code (the published history's held-out crops were cut
    before the one crop path, so the held-out rows of :func:`compare` may compare crops as well as models)."""
    from training.data.feature_cache import onnx_runner
    from training.evaluate import cosine_scores, row_cosine, ten_fold
    from training.neurons import NeuronSpace
    from training.stages.run import holdout
    from training.stages.select import selected
    from training.teachers.embedding import embed_crops

    _, pairs = holdout(run)
    used, local = pairs.on_images()
    cache = run.cache()
    crops = np.asarray(cache.load(run.student_crop_name(), 0))[used]
    raw = {t: np.asarray(cache.load(t, 0))[used] for t in run.cfg.teachers}
    chosen = selected(run)

    def scores(graph: Path, folder: Path) -> dict[str, float]:
        emb = embed_crops(crops, onnx_runner(graph))
        target = NeuronSpace.load(folder / "neurons.npz").transform(raw)[:, chosen]
        ver = ten_fold(cosine_scores(emb, local), local)
        return dict(zip(HELD_OUT, (float(row_cosine(emb, target).mean()), ver.roc_auc, ver.accuracy), strict=True))

    table = _Table(f"same crops ({len(used)} held-out images, {len(pairs.same)} pairs)")
    table.held_out(scores(published_graph, published_run), scores(run.dir / "student.onnx", run.dir), ", served graph")
    return table.ok, table.rows


def main(target: str, root: Path | None, publish: bool, threads: int | None = None, carry: Path | None = None) -> int:
    chain = lineage(target)
    model = not target.endswith((".yaml", ".yml"))  # a model of the manifest, not a config file
    # A config's own run lands in runs/ (it is the new model); the rounds before it, whose published twins are
    # already there, are rebuilt in the scratch folder beside a model's.
    scratch = root or CACHE / "reproduce"
    last_root = root or (scratch if model else REPO / "runs")
    log.info("lineage of %s: %s", target, " -> ".join(cfg.name for _, cfg in chain))
    run = rebuild(chain, scratch, target=target, publish=publish, threads=threads, carry=carry, last_root=last_root)
    last, published = run.dir, REPO / "runs" / chain[-1][1].name
    if published.resolve() == last.resolve() or not (published / "results.json").exists():
        log.info("built %s; no other published run of that name to compare with", last)
        return 0
    ok, rows = compare(last, published)
    verdict = "REPRODUCED: every row within tolerance" if ok else "NOT REPRODUCED: see the rows marked no"
    report = "\n".join(rows) + f"\n\n{verdict}\n"
    if model:
        from service.manifest import load_manifest

        graph = MODELS / load_manifest(MODELS / "manifest.json").models[target].components[0].file
        same, more = side_by_side(run, graph, published)
        report += (
            "\nBoth graphs scored side by side in this run, on the same crops (not part of the verdict):\n\n"
            + "\n".join(more)
            + f"\n\n{'within' if same else 'NOT within'} the same tolerances\n"
        )
    for folder in (last, carry) if carry is not None else (last,):
        (folder / "reproduce.md").write_text(f"# {chain[-1][1].name} rebuilt vs published\n\n{report}")
    print(report)
    return 0 if ok else 1
