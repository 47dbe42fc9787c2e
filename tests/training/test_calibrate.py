"""The committed operating points are what the calibration measures: re-run it on the real photos and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.manifest import load_manifest
from training.calibrate import RESULTS, calibrate, calibration_engine
from training.data.calibration_sets import CELEBA_TEST, CELEBA_TEST_IMAGES
from training.paths import DATA

MANIFEST = Path(__file__).resolve().parents[2] / "models" / "manifest.json"

pytestmark = pytest.mark.skipif(
    not (CELEBA_TEST_IMAGES.is_dir() and (CELEBA_TEST / "pairs.tsv").is_file() and (DATA / "lfw/pairs.txt").is_file()),
    reason="needs the CelebA test split's photos (../shared/data/more/extract.sh) and LFW",
)


def test_the_default_models_operating_points_are_reproduced() -> None:
    manifest = load_manifest(MANIFEST)
    name = manifest.default_model
    published = manifest.models[name].operating_points
    assert published is not None
    engine = calibration_engine(MANIFEST, manifest.detector, name, manifest.models[name])
    points, extra = calibrate(engine, CELEBA_TEST_IMAGES)
    assert points.calibrated_on == published.calibrated_on and points.held_out == published.held_out
    for got, want in zip([points.default, *points.rates], [published.default, *published.rates], strict=True):
        assert got.far == want.far
        # Another CPU may round ONNX Runtime's sums differently: a threshold may move by a grid step.
        assert got.threshold == pytest.approx(want.threshold, abs=2e-4)
        assert got.held_out.tar == pytest.approx(want.held_out.tar, abs=2e-3)
        assert got.lfw.accuracy == pytest.approx(want.lfw.accuracy, abs=2e-3)
    recorded = json.loads((RESULTS / f"{name}.json").read_text())
    assert recorded["sha256"] == engine.card.sha256
    assert recorded["operating_points"] == published.model_dump(mode="json")
    assert extra["lfw_photos_without_face"] == 0
