"""The reproduce command's plan and verdict: the lineage it rebuilds, and the comparison it ends with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from training.config import load_config
from training.reproduce import TOLERANCE, compare, lineage

REPO = Path(__file__).resolve().parents[2]
RUNS = REPO / "runs"


def test_the_default_models_lineage_starts_from_scratch_and_ends_at_its_run() -> None:
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    default = manifest["default_model"]
    chain = lineage(default)
    names = [cfg.name for _, cfg in chain]
    assert names[-1] == manifest["models"][default]["provenance"]["run"]
    assert chain[0][1].train.init_from is None
    for (_, parent), (_, child) in zip(chain, chain[1:], strict=False):
        assert child.train.init_from is not None and Path(child.train.init_from).name == parent.name
    assert len(set(names)) == len(names)


def test_a_config_lineage_is_that_config_when_it_trains_from_scratch() -> None:
    path = REPO / "training" / "configs" / "v2" / "deep.yaml"
    chain = lineage(str(path))
    assert [cfg.name for _, cfg in chain] == [load_config(path).name]


def test_a_run_compared_with_itself_is_reproduced() -> None:
    run = RUNS / "ensemble-deep8"
    ok, rows = compare(run, run)
    assert ok and all(row.endswith("| yes |") for row in rows[2:])


def test_a_rebuild_outside_the_tolerance_is_not_reproduced(tmp_path: Path) -> None:
    published = RUNS / "ensemble-deep8"
    rebuilt = tmp_path / "ensemble-deep8"
    shutil.copytree(published, rebuilt)
    results = json.loads((rebuilt / "results.json").read_text())
    results["lfw"]["accuracy"] -= 2 * TOLERANCE["lfw_accuracy"]
    (rebuilt / "results.json").write_text(json.dumps(results))
    ok, rows = compare(rebuilt, published)
    assert not ok
    assert [row for row in rows if row.endswith("| **no** |")] == [
        next(row for row in rows if row.startswith("| LFW accuracy"))
    ]


def test_the_carried_progress_counts_the_epochs_of_every_round(tmp_path: Path) -> None:
    import torch

    from training.reproduce import progress, write_progress

    chain = lineage(json.loads((REPO / "models" / "manifest.json").read_text())["default_model"])
    first, second = chain[0][1], chain[1][1]
    (tmp_path / first.name).mkdir()
    torch.save({"epoch": first.train.epochs}, tmp_path / first.name / "checkpoint.pt")
    (tmp_path / second.name).mkdir()
    torch.save({"epoch": 3}, tmp_path / second.name / "checkpoint.pt")
    rows = progress(chain, tmp_path)
    assert rows[0] == (first.name, first.train.epochs, first.train.epochs)
    assert rows[1] == (second.name, 3, second.train.epochs)
    assert all(done == 0 for _, done, _ in rows[2:])
    write_progress(chain, tmp_path, "mobileid-ensemble-int8")
    total = sum(cfg.train.epochs for _, cfg in chain)
    readme = (tmp_path / "README.md").read_text()
    assert f"{first.train.epochs + 3} of {total} epochs trained" in readme
    assert f"reproduce mobileid-ensemble-int8 --carry {tmp_path}" in readme


def test_a_round_trained_on_an_earlier_machine_is_restored_not_exported_again() -> None:
    from training.reproduce import STAGES, round_stages

    assert round_stages(last=False, carried=False, publish=True) == STAGES
    assert round_stages(last=False, carried=True, publish=False) == ["teachers", "align", "features", "select", "train"]
    # The last round is always exported and scored: the comparison with the published model reads its results.
    assert round_stages(last=True, carried=True, publish=False) == STAGES
    assert round_stages(last=True, carried=False, publish=True) == [*STAGES, "publish"]


def test_a_carried_round_refuses_a_selection_that_came_out_otherwise(tmp_path: Path) -> None:
    import pytest

    from training.reproduce import carry_selection

    run, carried = tmp_path / "run", tmp_path / "carry" / "round"
    run.mkdir()
    (run / "selection.json").write_text(json.dumps({"selected": [3, 1, 2], "count": 3}))
    carry_selection(run, carried)  # first machine: kept
    assert json.loads((carried / "selection.json").read_text())["selected"] == [3, 1, 2]
    carry_selection(run, carried)  # the same selection again: fine
    (run / "selection.json").write_text(json.dumps({"selected": [3, 1, 4], "count": 3}))
    with pytest.raises(RuntimeError, match=r"other neurons .*2 differ: \[2, 4\]"):
        carry_selection(run, carried)


def test_a_round_on_the_curated_pool_goes_on_from_the_defaults_rebuilt_rounds() -> None:
    rounds = lineage(str(REPO / "training" / "configs" / "published" / "residual" / "ensemble-deep9.yaml"))
    published = lineage("mobileid-ensemble-int8")  # round 8, the model round 9 goes on from
    assert [cfg.name for _, cfg in rounds[:-1]] == [cfg.name for _, cfg in published]
    # The same training inputs as the committed runs: their carried checkpoints resume instead of training again.
    assert [cfg.hash() for _, cfg in rounds[:-1]] == [cfg.hash() for _, cfg in published]
    last = rounds[-1][1]
    assert last.selection.method == "inherit" and last.data.curated
    assert last.train.init_from is not None and Path(last.train.init_from).name == published[-1][1].name


def test_an_inherited_selection_is_the_parents_neurons_and_standardisation(tmp_path: Path) -> None:
    import dataclasses

    import pytest

    from training.neurons import NeuronSpace
    from training.stages.run import Run
    from training.stages.select import stage_select

    parent = RUNS / "ensemble-deep8"
    cfg = load_config(REPO / "training" / "configs" / "published" / "residual" / "ensemble-deep9.yaml")
    chosen = stage_select(Run(cfg, tmp_path))
    assert chosen == json.loads((parent / "selection.json").read_text())["selected"]
    ours = NeuronSpace.load(tmp_path / cfg.name / "neurons.npz")
    assert ours.same_as(NeuronSpace.load(parent / "neurons.npz"))
    orphan = dataclasses.replace(cfg, name="orphan", train=dataclasses.replace(cfg.train, init_from=None))
    with pytest.raises(ValueError, match="needs train.init_from"):
        stage_select(Run(orphan, tmp_path))
