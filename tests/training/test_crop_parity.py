"""One crop path: the crop training caches and evaluates on is the crop the service makes, bit for bit.

The served crop comes from the real engine (decode, YuNet, main-face rule, ``service.cropping``) on the file's
bytes; the training crop from ``training.data.landmarks`` detection and ``training.data.views.crop_view`` (the
plain view), as ``python -m training features`` and ``evaluate`` make them. Faces larger than twice a crop's
scale (LFW's and most pool faces for the 64 px student) go through the box reduction on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.engine import Engine, Upload
from training.data.landmarks import detect_all, make_detector
from training.data.sets import load_rgb, set_files
from training.data.views import crop_view
from training.paths import data_path

LFW = sorted(str(p) for p in (Path(__file__).resolve().parent.parent / "data").glob("*_00*.jpg"))


def _pool_sample() -> list[str]:
    try:
        return [f for name in ("celeba", "celeba_wild", "utkface") for f in set_files(name)[::2000][:4]]
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def engine(make_settings: Callable[..., Settings]) -> Engine:
    return Engine.load(make_settings())


@pytest.mark.parametrize("source", ["lfw", "pool"])
def test_training_crop_is_the_served_crop(engine: Engine, source: str) -> None:
    files = LFW if source == "lfw" else _pool_sample()
    if not files:
        pytest.skip("the shared pool images are not beside the clone")
    paths = [Path(f) if source == "lfw" else data_path(f) for f in files]
    # Training detects with the training code on the same files (absolute paths resolve as they are).
    found = detect_all([str(p) for p in paths], make_detector(1), desc="parity")
    specs = [spec for specs in engine.crop_specs for spec in specs]
    checked = 0
    for i, path in enumerate(paths):
        face, _, served = engine._analyse_one(Upload("image", path.read_bytes()), require_single_face=False)
        np.testing.assert_allclose(face.landmarks, found.points[i], atol=1e-3)
        image = load_rgb(str(path))
        crops = [crop for per_component in served for crop in per_component]
        for spec, crop in zip(specs, crops, strict=True):
            trained = crop_view(image, found.points[i], np.asarray(spec.template), (spec.width, spec.height))
            assert np.array_equal(trained, crop), f"{path.name}: training crop differs from the served crop"
            checked += 1
    assert checked == len(paths) * len(specs)
