"""Run configs: settings added after runs were published leave those runs' hashes alone, unless changed."""

from __future__ import annotations

import pytest

from training.config import load_config


@pytest.mark.parametrize(
    ("key", "default", "value"),
    [("train.mirror", "0.0", "0.5"), ("train.relational_weight", "0.0", "2.0"), ("student.stem_blocks", "0", "1")],
)
def test_a_later_setting_changes_the_hash_only_away_from_its_default(key: str, default: str, value: str) -> None:
    base = load_config(None, ["name=x"]).hash()
    assert load_config(None, ["name=x", f"{key}={default}"]).hash() == base
    assert load_config(None, ["name=x", f"{key}={value}"]).hash() != base


def test_the_calibration_method_counts_whether_or_not_the_export_section_is_at_its_default() -> None:
    plain, int8 = load_config(None, []), load_config(None, ["export.quantize=int8"])
    assert load_config(None, ["export.calibration=minmax"]).hash() == plain.hash()
    assert load_config(None, ["export.quantize=int8", "export.calibration=minmax"]).hash() == int8.hash()
    assert load_config(None, ["export.quantize=int8", "export.calibration=percentile"]).hash() != int8.hash()
    assert len({plain.hash(), int8.hash()}) == 2
