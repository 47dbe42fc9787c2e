"""Run configs: the hash covers every training input and nothing else, and survives save and load; settings
added after runs were published leave those runs' hashes alone, unless changed; every committed run is what the
config that names it trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from training.config import NOT_TRAINING_INPUTS, RunConfig, load_config, read_tree, save_config, training_inputs
from training.studies.ablation import variants

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "training" / "configs"
RUNS = REPO / "runs"


@pytest.mark.parametrize(
    ("key", "default", "value"),
    [
        ("train.mirror", "0.0", "0.5"),
        ("train.relational_weight", "0.0", "2.0"),
        ("student.stem_blocks", "0", "1"),
        ("student.tail_blocks", "0", "2"),
        ("student.tail_width", "32", "48"),
        ("student.inverted_stages", "0", "1"),
        ("student.expansion", "2", "1"),
        ("train.turned_weight", "1.0", "3.0"),
        ("train.turned_yaw", "30.0", "20.0"),
    ],
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


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in tree.items():
        out += _leaves(value, (*prefix, key)) if isinstance(value, dict) else [(*prefix, key)]
    return out


def _changed(value: Any) -> Any:
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return [*value, value[-1]] if value else [1]
    return "set"  # None


def _with(path: tuple[str, ...], value: Any) -> RunConfig:
    return load_config(None, [f"{'.'.join(path)}={yaml.safe_dump(value, default_flow_style=True).strip()}"])


LEAVES = _leaves(RunConfig().to_dict())


@pytest.mark.parametrize("path", [p for p in LEAVES if p not in NOT_TRAINING_INPUTS], ids=".".join)
def test_every_training_input_changes_the_hash(path: tuple[str, ...]) -> None:
    default = RunConfig()
    tree = default.to_dict()
    for key in path:
        tree = tree[key]
    assert _with(path, _changed(tree)).hash() != default.hash()


@pytest.mark.parametrize("path", NOT_TRAINING_INPUTS, ids=".".join)
def test_output_only_keys_leave_the_hash_alone(path: tuple[str, ...]) -> None:
    assert path in LEAVES  # still a setting: the list must not name keys that no longer exist
    value = {"name": "renamed", "publish_as": "mobileid-x", "publish_default": True}.get(path[-1], 7)
    assert _with(path, value).hash() == RunConfig().hash()


def test_a_warm_start_parent_counts_by_its_run_not_by_where_its_folder_lies() -> None:
    committed = _with(("train", "init_from"), "runs/ensemble-deep7")
    # reproduce warm-starts from its own rebuilt rounds, in the cache of whichever machine it runs on
    for scratch in ("/work/cache/mobileid/reproduce/ensemble-deep7", "/tmp/other-machine/reproduce/ensemble-deep7"):
        assert _with(("train", "init_from"), scratch).hash() == committed.hash()
    assert _with(("train", "init_from"), "runs/ensemble-deep6-stem").hash() != committed.hash()


def test_a_saved_config_names_its_parent_run_not_the_folder_it_was_warm_started_from(tmp_path: Path) -> None:
    rebuilt = _with(("train", "init_from"), "/work/cache/mobileid/reproduce/ensemble-deep7")
    save_config(rebuilt, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["init_from"] == "runs/ensemble-deep7"
    assert rebuilt.train.init_from == "/work/cache/mobileid/reproduce/ensemble-deep7"  # the run itself unchanged


def test_the_hash_survives_save_and_load(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "published/residual/ensemble-deep8.yaml")
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.hash() == cfg.hash() == yaml.safe_load((tmp_path / "config.yaml").read_text())["config_hash"]
    cfg.student.out_dim = 192  # what stage_train sets: derived, not an input
    cfg.publish_as = "elsewhere"
    assert cfg.hash() == again.hash()


def test_published_models_record_their_runs_hash() -> None:
    """The manifest's config_hash is the hash of the committed run config, under this definition."""
    manifest = json.loads((REPO / "models/manifest.json").read_text())
    for name, model in manifest["models"].items():
        run = REPO / "runs" / model["provenance"]["run"] / "config.yaml"
        assert load_config(run).hash() == model["provenance"]["config_hash"], name


def _configs() -> tuple[dict[str, list[Path]], dict[str, RunConfig]]:
    """Run name -> the config files that name it, and each study variant's resolved config (training.studies.ablation).

    A file without a ``name`` is a base (others inherit it); a file with ``variants`` is a study spec."""
    named: dict[str, list[Path]] = {}
    studies: dict[str, RunConfig] = {}
    for path in sorted(CONFIGS.rglob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if "variants" in spec:
            for overrides in variants(spec).values():
                cfg = load_config(REPO / spec["base"], overrides)
                studies[cfg.name] = cfg
        elif "name" in read_tree(path):
            named.setdefault(load_config(path).name, []).append(path)
    return named, studies


NAMED, STUDIES = _configs()
COMMITTED = sorted(p.parent.name for p in RUNS.glob("*/config.yaml"))


def test_no_two_configs_name_one_run() -> None:
    assert {name: paths for name, paths in NAMED.items() if len(paths) > 1} == {}
    assert set(NAMED).isdisjoint(STUDIES)


@pytest.mark.parametrize(
    "run",
    COMMITTED,
)
def test_every_committed_run_is_what_its_config_trains(run: str) -> None:
    """The config (or study variant) that names a committed run resolves to the training inputs the run recorded
    in its config.yaml, and so to the same config hash."""
    recorded = load_config(RUNS / run / "config.yaml")
    assert run in NAMED or run in STUDIES, f"no config under training/configs names run {run!r}"
    cfg = load_config(NAMED[run][0]) if run in NAMED else STUDIES[run]
    assert training_inputs(cfg) == training_inputs(recorded)
    assert cfg.hash() == recorded.hash()


def test_published_models_come_from_configs_under_published() -> None:
    """A model of the manifest is made by a config of ``published/`` that publishes it under its name, or is a served
    variant of such a model (the very same files and provenance, served with a mirror image or shifted crops:
    ``reproduce`` rebuilds its graph with the model's lineage); no experiment publishes (an experiment inherits a
    round's config, never its model name)."""
    manifest = json.loads((REPO / "models/manifest.json").read_text())
    trained = {}
    for name, model in manifest["models"].items():
        (path,) = NAMED[model["provenance"]["run"]]
        assert path.is_relative_to(CONFIGS / "published"), name
        if load_config(path).publish_as == name:
            trained[model["provenance"]["run"]] = model
    for name, model in manifest["models"].items():
        base = trained.get(model["provenance"]["run"])
        assert base is not None, f"{name}: no published config makes it or the graph it serves"
        assert model["provenance"] == base["provenance"], name
        files = [(c["file"], c["sha256"]) for c in model["components"]]
        assert files == [(c["file"], c["sha256"]) for c in base["components"]], name
    experiments = [p for paths in NAMED.values() for p in paths if p.is_relative_to(CONFIGS / "experiments")]
    assert experiments and not [p for p in experiments if load_config(p).publish_as]


def test_config_base_supplies_what_a_run_leaves_out(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("name: base\ntrain:\n  epochs: 3\n  lr: 0.5\ndata:\n  views: [0, 6]\n")
    (tmp_path / "run.yaml").write_text("base: base.yaml\nname: run\ntrain:\n  epochs: 7\n")
    cfg = load_config(tmp_path / "run.yaml")
    assert (cfg.name, cfg.train.epochs, cfg.train.lr, cfg.data.views) == ("run", 7, 0.5, [0, 6])
