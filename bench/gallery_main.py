"""Run the identification level and write its results (JSON, Markdown, README section)."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from datetime import date
from typing import Any

from bench import gallery_bench, gallery_report
from bench.machine import describe
from training.paths import CACHE, DATA, MORE, REPO
from training.report import replace_section

log = logging.getLogger("bench")
# MORE: where the data stage laid out the extra images (CelebA test split, FairFace, CelebA-HQ), the same
# folder training reads (``MOBILEID_MORE``, default ``MOBILEID_CACHE/more``).


def main(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    started, machine = time.perf_counter(), describe()
    result = gallery_bench.run(args, DATA, MORE, CACHE / "bench" / "identification", args.manifest, args.teachers)
    result["machine"] = machine
    result["run"] = {
        "date": date.today().isoformat(),
        "quick": args.quick,
        "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "seconds": time.perf_counter() - started,
    }
    result["bars"] = gallery_report.bars(result)
    stem = f"{result['run']['date']}-{machine['slug']}-identification" + ("-quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(gallery_report.document(result))
    if not (args.quick or args.no_readme):
        section = gallery_report.readme_section(result, f"{stem}.md")
        if not replace_section(REPO / "README.md", gallery_report.README_START, gallery_report.README_END, section):
            log.warning("README.md has no %s markers: section not written", gallery_report.README_START)
    for bar in result["bars"]:
        log.info("%s  %s: %s", bar["verdict"], bar["name"], bar["measured"])
    return result
