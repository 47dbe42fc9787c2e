"""The data stage: source extraction from a real git repository, the curation rules, rich views, view sampling."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.curate import max_cosine
from training.data.feature_cache import view_for
from training.data.sources import Source, extract_source, git_dir
from training.data.views import CANVAS, CANVAS_TEMPLATE, RICH_FIRST, Mix, Occluder, View, render_view
from training.trainer import SampledViews

PHOTO = Path(__file__).resolve().parent.parent / "data" / "Laura_Bush_0001.jpg"
# Landmarks of that LFW photo's face (YuNet, rounded): the test needs a face, not a detector.
LANDMARKS = np.array([[101.0, 111.0], [150.0, 107.0], [126.0, 134.0], [108.0, 158.0], [149.0, 155.0]])


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _snapshot(tmp_path: Path) -> tuple[Path, str]:
    """A real git repository laid out as ``fetch`` leaves it (``owner+name/repo``), with three images."""
    work = tmp_path / "work"
    (work / "faces" / "sub").mkdir(parents=True)
    with Image.open(PHOTO) as photo:
        photo.save(work / "faces" / "a.jpg")
        photo.rotate(5).save(work / "faces" / "sub" / "b.jpg")
        photo.save(work / "faces" / "skip.png")
    (work / "README").write_text("not an image\n")
    _git(work, "init", "-q")
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "faces")
    commit = _git(work, "rev-parse", "HEAD").strip()
    mirror = tmp_path / "mirror" / "someone+faces"
    mirror.parent.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(mirror / "repo")], check=True)
    return tmp_path / "mirror", commit


def test_extract_source_takes_the_commit_strips_and_counts(tmp_path: Path) -> None:
    mirror, commit = _snapshot(tmp_path)
    source = Source("faces", "someone/faces", commit, ("faces",), 1, 2, "test", "test", only=r"\.jpg$")
    assert extract_source(source, mirror, tmp_path / "out") == 2
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "faces",
        "faces/a.jpg",
        "faces/sub",
        "faces/sub/b.jpg",
    ]
    # A second call finds the right count and does nothing; a wrong expected count is an error.
    assert extract_source(source, mirror, tmp_path / "out") == 2
    wrong = Source("faces2", "someone/faces", commit, ("faces",), 1, 3, "test", "test", only=r"\.jpg$")
    with pytest.raises(RuntimeError, match="2 images extracted, expected 3"):
        extract_source(wrong, mirror, tmp_path / "out")


def test_git_dir_finds_fetched_and_cloned_layouts_and_says_how_to_get_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "a+b" / "repo").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    assert git_dir(tmp_path, "a/b") == tmp_path / "a+b" / "repo"
    assert git_dir(tmp_path, "x/c") == tmp_path / "c"
    with pytest.raises(FileNotFoundError, match="fetch github:x/y"):
        git_dir(tmp_path, "x/y")


def test_max_cosine_finds_the_nearest_reference() -> None:
    refs = np.eye(3, dtype=np.float32)
    queries = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    best, arg = max_cosine(queries, refs, block=1)
    np.testing.assert_allclose(best, [0.8, 1.0])
    assert arg.tolist() == [1, 2]


def _crops() -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    small = CANVAS_TEMPLATE * (64 / CANVAS[0])
    return {"big": (CANVAS_TEMPLATE, CANVAS), "small": (small, (64, 64))}


def test_plain_views_are_unchanged_and_rich_views_are_seeded() -> None:
    assert not view_for(3, 0).rich and not view_for(3, RICH_FIRST - 1).rich
    assert view_for(3, RICH_FIRST).rich
    assert view_for(3, RICH_FIRST) == view_for(3, RICH_FIRST)
    assert view_for(3, RICH_FIRST) != view_for(4, RICH_FIRST)


def test_every_model_crop_of_a_rich_view_is_cut_from_the_same_changed_picture() -> None:
    with Image.open(PHOTO) as photo:
        image = photo.convert("RGB")
    # An occluder over the middle of the canonical crop, in pure red, and nothing else: the big crop (the canvas
    # itself) and the small crop (the same region at 64 px) must both show it at the same place.
    view = View(occluder=Occluder(0.4, 0.4, 0.2, 0.2, (255, 0, 0)))
    made = render_view(image, LANDMARKS, _crops(), view, np.random.default_rng(0))
    big, small = made["big"].astype(int), made["small"].astype(int)
    assert (big[130:156, 130:156] == [255, 0, 0]).all()
    assert (np.abs(small[28:36, 28:36] - [255, 0, 0]) < 40).all()
    plain = render_view(image, LANDMARKS, _crops(), View(), np.random.default_rng(0))
    assert not (plain["big"][130:156, 130:156].astype(int) == [255, 0, 0]).all()
    # A mixed-in face: the teachers label the mixed picture; mixing a face with itself changes nothing.
    mixed = render_view(image, LANDMARKS, _crops(), View(mix=Mix("mixup", 0.0, lam=0.5)), None, (image, LANDMARKS))
    canvas = render_view(image, LANDMARKS, _crops(), View(occluder=Occluder(0, 0, 0, 0, (0, 0, 0))), None)
    assert np.abs(mixed["big"].astype(int) - canvas["big"]).max() <= 1


def test_sampled_views_show_each_image_in_distinct_views_each_epoch() -> None:
    rows = np.array([5, 7, 9])
    crops = [np.full((10, 2, 2, 3), v, np.uint8) for v in range(4)]
    targets = [np.full((3, 1), 10 * v, np.float32) + np.arange(3)[:, None] for v in range(4)]
    data = SampledViews(crops, targets, rows, per_epoch=2)
    order = data.epoch(np.random.default_rng(0))
    assert len(order) == len(data) == 6
    x, t = data.batch(order)
    view, image = order // 3, order % 3
    assert (x[:, 0, 0, 0] == view).all() and (t[:, 0] == 10 * view + image).all()
    for i in range(3):  # each image twice, in two different views
        assert len(set(view[image == i].tolist())) == 2


def test_a_repository_run_keeps_its_checkpoint_in_the_cache_and_other_runs_keep_theirs(tmp_path: Path) -> None:
    from training.paths import CACHE, REPO, checkpoint_path

    # A run of the repository keys by its path inside it, so a fresh checkout elsewhere finds the same file.
    ours = checkpoint_path(REPO / "runs" / "v2-deep")
    assert ours.is_relative_to(CACHE / "checkpoints") and ours.parent.name.startswith("v2-deep-")
    assert ours != checkpoint_path(REPO / "runs" / "elsewhere" / "v2-deep")  # same name, other folder
    # A run folder outside the repository (a test's, a scratch rebuild's) keeps its checkpoint inside itself.
    a = tmp_path / "x" / "run"
    assert checkpoint_path(a) == a / "checkpoint.pt"
