"""The image sets: the training pool's three original sets, the extra sources (once extracted), LFW.

File names are relative to the data folder (or to the extracted sources: ``training.paths.data_path``). LFW is
read for evaluation only.
"""

from __future__ import annotations

from PIL import Image

from training.paths import DATA, MORE, MORE_PREFIX, data_path

POOL_SETS = ("celeba", "celeba_wild", "utkface")
_SET_DIRS = {
    "celeba": "celeba/img_align_celeba_89x109",
    "celeba_wild": "pool/celeba_wild_128",
    "utkface": "pool/utkface_128",
}
# The extra sources (training.data.sources), extracted under MORE by ``python -m training data``.
_MORE_DIRS = {
    "fairface_45k": "fairface_45k/fair_face",
    "celebahq_256": "celebahq_256",
    "net_7876": "net_7876",
    "caltech_webfaces": "caltech_webfaces/Caltech_WebFaces",
    "mtfl_aflw_80": "mtfl_aflw_80/AFLW",
    "celeba_test": "celeba_test",
}


def set_files(name: str, limit: int | None = None) -> list[str]:
    """Sorted file names (see ``training.paths.data_path``) of one image set; the first ``limit``."""
    if name in _SET_DIRS:
        folder, prefix = DATA / _SET_DIRS[name], _SET_DIRS[name]
    elif name in _MORE_DIRS:
        folder, prefix = MORE / _MORE_DIRS[name], MORE_PREFIX + _MORE_DIRS[name]
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: run `python -m training data --sources DIR` first")
    else:
        raise ValueError(f"unknown image set {name!r}; known: {sorted(_SET_DIRS) + sorted(_MORE_DIRS)}")
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.jpg"))
    return [f"{prefix}/{n}" for n in names[:limit]]


def pool_files(sets: tuple[str, ...] = POOL_SETS, limit: int | None = None) -> list[str]:
    """Sorted relative paths of the training-pool images (never LFW); ``limit`` per set."""
    return [f for name in sets for f in set_files(name, limit)]


def lfw_files() -> list[str]:
    folder = DATA / "lfw/images_deepfunneled"
    return sorted(str(p.relative_to(DATA)) for p in folder.glob("*/*.jpg"))


def load_rgb(relative: str) -> Image.Image:
    with Image.open(data_path(relative)) as image:
        return image.convert("RGB")
