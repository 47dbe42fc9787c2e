"""One-off studies that train or score several models side by side and write a table: the neuron-selection
ablation and the learning curve (``ablation``, specs in ``training/configs/studies/``), accuracy by head pose
(``pose``), twins on held-out data (``compare``), the teachers at reduced input resolution (``resolution``), the
learning curve's fitted error law from a twins table (``curve``), test-time shifted crops through the service's
engine (``shifts``), how far a student's answer moves when its crop moves (``sensitivity``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_table(out: Path, stem: str, table: dict[str, Any], text: str) -> None:
    """A study's result in ``out``: the table as ``<stem>.json`` and its markdown as ``README.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "README.md").write_text(text)
