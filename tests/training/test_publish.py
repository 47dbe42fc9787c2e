"""Publishing writes the manifest through the strict schema: the entry built from a run's committed results is
the committed entry of the model it published (calibration aside)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.manifest import load_manifest
from training.config import load_config
from training.stages.publish import student_entry

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "models" / "manifest.json"


@pytest.mark.parametrize("name", ["mobileid-ensemble-int8", "mobileid-ensemble-slim"])
def test_a_runs_entry_is_the_published_one(name: str) -> None:
    published = load_manifest(MANIFEST).models[name]
    assert published.provenance is not None
    run = REPO / "runs" / published.provenance.run
    entry = student_entry(
        load_config(run / "config.yaml"), json.loads((run / "results.json").read_text()), f"{name}.onnx"
    )
    assert entry.components == published.components
    assert (entry.description, entry.lfw, entry.teachers) == (published.description, published.lfw, published.teachers)
    assert entry.provenance is not None
    # The run recorded its hash under the old definition (it included the run's name and publish_as).
    ignore = {"config_hash"}
    assert entry.provenance.model_dump(exclude=ignore) == published.provenance.model_dump(exclude=ignore)
    assert entry.operating_points is None and published.operating_points is not None
