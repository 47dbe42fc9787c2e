"""The files one benchmark run writes: JSON (everything), Markdown (the report), the plot, the README section."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import plot, report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    json: Path
    markdown: Path
    plot: Path

    @classmethod
    def for_run(cls, folder: Path, machine: str, day: str, quick: bool) -> Outputs:
        """``<folder>/<day>-<machine>.json|.md`` and ``accuracy_vs_speed.png``; a ``-quick`` suffix in quick mode,
        so a smoke check never overwrites the committed results."""
        suffix = "-quick" if quick else ""
        stem = f"{day}-{machine}{suffix}"
        return cls(folder / f"{stem}.json", folder / f"{stem}.md", folder / f"accuracy_vs_speed{suffix}.png")


def _plain(value: object) -> object:
    """JSON fallback for numpy scalars and paths."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def write_results(result: dict[str, Any], outputs: Outputs, readme: Path | None) -> None:
    """Write the JSON, the Markdown report and the plot; regenerate the README section if ``readme`` is given."""
    outputs.json.parent.mkdir(parents=True, exist_ok=True)
    outputs.json.write_text(json.dumps(result, indent=1, default=_plain) + "\n")
    outputs.markdown.write_text(report.document(result))
    models = (result.get("models") or {}).get("models", [])
    title = f"LFW accuracy vs served cost, {result['machine']['slug']}, {result['run']['date']}"
    plot.accuracy_vs_speed(models, outputs.plot, title)
    log.info("wrote %s, %s and %s", outputs.json, outputs.markdown, outputs.plot)
    if readme is None:
        log.info("README.md not touched (quick mode or --no-readme)")
        return
    report.update_readme(readme, report.readme_section(result, outputs.markdown.name, outputs.plot.name))
