"""The studies' own arithmetic (pose binning from landmarks, the twins table)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.data.landmarks import estimated_yaw
from training.operating_points import all_pair_scores
from training.studies import write_table
from training.studies.compare import genuine_flags, markdown
from training.studies.curve import curve, fit_power_law, predict, render
from training.studies.resolution import reduced


def test_estimated_yaw_is_zero_when_frontal_and_grows_as_the_nose_moves() -> None:
    frontal = np.array([[[0, 0], [10, 0], [5, 5], [1, 9], [9, 9]]], float)
    turned = frontal.copy()
    turned[0, 2, 0] = 5 + 6.0  # nose 0.6 eye distances off the midpoint: tan(yaw) = 1
    np.testing.assert_allclose(estimated_yaw(np.concatenate([frontal, turned])), [0.0, 45.0], atol=1e-9)


def test_compare_table_shows_the_training_fit_beside_the_held_out_cosine() -> None:
    scores = {"accuracy": 0.9, "accuracy_std": 0.01, "auc": 0.97, "tar_at_far_1e2": 0.7, "accuracy_turned": 0.8}
    table = {
        "pairs": 3000,
        "turned_pairs": 193,
        "runs": {
            "twin": {
                "epochs": 8,
                "celeba_test_selection_folds": scores,
                "selected_teacher_neurons": scores,
                "holdout_1pass": {"cos_to_teacher": 0.7026, "accuracy": 0.8833, "auc": 0.9554},
                "train_cos_to_teacher": 0.7140,
            },
            "published (ONNX)": {
                "epochs": None,
                "celeba_test_selection_folds": scores,
                "selected_teacher_neurons": None,
                "holdout_1pass": {"accuracy": 0.901, "auc": 0.9648},
            },
        },
    }
    rows = [line for line in markdown(table).splitlines() if line.startswith("| twin") or line.startswith("| pub")]
    assert "| 0.7026 | 0.7140 | 88.33 % | 0.9554 |" in rows[0]
    assert "| - | - | 90.10 % | 0.9648 | - |" in rows[1]
    header = markdown(table).splitlines()[4]
    assert header.count("|") == rows[0].count("|") == rows[1].count("|")


def test_reduced_crops_keep_their_size_and_lose_only_detail() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    assert reduced(crops, 112) is crops  # at full size: untouched
    low = reduced(crops, 28)
    assert low.shape == crops.shape and low.dtype == np.uint8
    # noise loses its detail, a flat crop loses nothing
    assert np.abs(low.astype(float) - crops).mean() > 30
    flat = np.full((1, 112, 112, 3), 90, np.uint8)
    np.testing.assert_array_equal(reduced(flat, 28), flat)


def test_a_study_writes_its_table_as_json_and_its_markdown_as_readme(tmp_path: Path) -> None:
    write_table(tmp_path / "study", "pose", {"bins": ["0-15"], "models": {}}, "# Table\n")
    assert json.loads((tmp_path / "study" / "pose.json").read_text()) == {"bins": ["0-15"], "models": {}}
    assert (tmp_path / "study" / "README.md").read_text() == "# Table\n"


def test_learning_curve_fit_recovers_a_known_saturating_law() -> None:
    n = np.array([10_000, 20_000, 40_000, 80_000], float)
    error = 0.1 + 30.0 * n**-0.7
    fit = fit_power_law(n, error)
    assert abs(fit["exponent"] - 0.7) < 0.01
    assert abs(fit["floor"] - 0.1) < 2e-3
    assert abs(predict(fit, 160_000) - (0.1 + 30.0 * 160_000**-0.7)) < 1e-3


def test_learning_curve_reads_images_per_run_and_sorts_the_points(tmp_path: Path) -> None:
    def entry(acc: float) -> dict[str, object]:
        scores = {"accuracy": acc, "auc": acc, "cos_to_teacher": acc}
        return {
            "epochs": 8,
            "celeba_test_selection_folds": scores,
            "holdout_1pass": scores,
            "train_cos_to_teacher": acc,
        }

    compare = {"runs": {"big": entry(0.9), "small": entry(0.8), "mid": entry(0.87)}}
    for name, images in (("big", 400), ("small", 100), ("mid", 200)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_data.json").write_text(json.dumps({"images": images, "views": 1}))
    result = curve(compare, ["big", "small", "mid"], runs=tmp_path)
    assert [p["run"] for p in result["points"]] == ["small", "mid", "big"]
    assert result["largest_images"] == 400
    assert result["fits"]["holdout_error"]["floor"] < 0.1  # still falling at the largest point: the floor is below it
    assert "| big | 400 |" in render(result)


def test_genuine_pair_flags_follow_the_order_of_all_pair_scores() -> None:
    identities = np.array([7, 3, 7, 3, 7, 5])
    flagged = np.array([False, False, False, True, True, False])
    # 1-D "embeddings" whose products name the pair: image k is 2**k, so pair (i, j) scores 2**(i + j)
    embeddings = (2.0 ** np.arange(6, dtype=np.float32))[:, None]
    genuine = all_pair_scores(embeddings, identities).genuine
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6) if identities[i] == identities[j]]
    assert genuine.tolist() == [2.0 ** (i + j) for i, j in pairs]  # (0,2), (0,4), (1,3), (2,4)
    assert genuine_flags(identities, flagged).tolist() == [flagged[i] or flagged[j] for i, j in pairs]
    assert genuine_flags(identities, flagged).tolist() == [False, True, True, True]


def test_the_sensitivity_study_moves_crops_as_asked() -> None:
    from training.studies.sensitivity import moved

    crops = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(moved(crops, 0.0, 0.0, 1.0, 0.0), crops)  # no move: the very pixels
    ramp = np.broadcast_to((np.arange(16) * 10).astype(np.uint8)[None, None, :, None], (1, 16, 16, 3))
    # one pixel along x: every inner column takes its neighbour's value
    shifted = moved(np.ascontiguousarray(ramp), 1.0, 0.0, 1.0, 0.0).astype(int)
    assert np.array_equal(shifted[0, :, 1:-1, 0] - ramp[0, :, 1:-1, 0].astype(int), np.full((16, 14), 10))
