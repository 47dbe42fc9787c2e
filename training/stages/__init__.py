"""The stages of a run, in order; each reads what earlier stages left in the cache or the run folder.

teachers -> align -> features -> evaluate-teachers -> select -> train -> export -> evaluate -> publish

One module per stage (``features`` holds ``align`` and ``features``; ``teachers`` holds ``teachers`` and
``evaluate-teachers``); ``run`` is the run folder they share. The data stage (``data``) runs once per machine,
before any run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the stages are imported when one runs: they pull in torch
    from training.stages.run import Run

STAGES = ["teachers", "align", "features", "evaluate-teachers", "select", "train", "export", "evaluate", "publish"]


def run_stage(stage: str, run: Run) -> None:
    """Run one stage (a name of :data:`STAGES`) of ``run``."""
    from training import report
    from training.stages import evaluate, export, features, publish, select, teachers, train

    actions: dict[str, Callable[[Run], object]] = {
        "teachers": teachers.stage_teachers,
        "align": features.stage_align,
        "features": features.stage_features,
        "evaluate-teachers": teachers.stage_evaluate_teachers,
        "select": select.stage_select,
        "train": train.stage_train,
        "export": export.stage_export,
        "evaluate": lambda r: (evaluate.stage_evaluate(r), report.write_run_report(r.dir)),
        "publish": publish.stage_publish,
    }
    actions[stage](run)
