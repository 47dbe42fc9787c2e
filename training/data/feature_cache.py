"""Teacher-neuron cache: the top layer of each teacher on every training-pool image and augmented view.

Teachers dominate the cost (SFace ~17 ms/face, dlib ~5 ms/face on 2 cores), so their outputs are computed
once and stored as float16 arrays, one file per (teacher, view), next to the student's uint8 input crops of
the same views. Files are filled chunk by chunk with a progress marker, so an interrupted build resumes;
new views extend the cache without touching the old ones. LFW is never cached here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from service.alignment import ARCFACE_112, template_for
from training.data.landmarks import Landmarks
from training.data.sets import load_rgb
from training.data.views import IDENTITY, RICH_FIRST, View, random_view, render_view, rich_view

log = logging.getLogger(__name__)

CHUNK = 512

# ``(N, H, W, 3)`` uint8 RGB crops -> ``(N, D)`` float32 outputs of a model (see :func:`onnx_runner`).
Runner = Callable[[NDArray[np.uint8]], NDArray[np.float32]]


@dataclass(frozen=True)
class CropSpec:
    """A model's crop: its template (5, 2) on a ``size`` (W, H) crop."""

    name: str
    template: NDArray[np.float64]
    size: tuple[int, int]


def arcface_crop(size: int) -> CropSpec:
    return CropSpec(f"arcface{size}", template_for(np.array(ARCFACE_112), (size, size), (112, 112)), (size, size))


def view_for(index: int, view: int, seed: int = 0) -> View:
    """View ``view`` of image ``index``: view 0 is the plain alignment, views 1-5 seeded random jitters, views from
    ``RICH_FIRST`` on seeded rich views (jitter, photometric changes, occluders, mixed faces)."""
    if view == 0:
        return IDENTITY
    rng = np.random.default_rng([seed, index, view])
    return rich_view(rng) if view >= RICH_FIRST else random_view(rng)


def onnx_runner(path: Path, threads: int = 2, batch: int = 32) -> Runner:
    """A function mapping ``(N, H, W, 3)`` uint8 RGB crops to the graph's output (raw 0-255 input graphs)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No spin-waiting: on a machine shared with other work (tests, a second job) ORT's spinning threads take the
    # CPU from each other; measured 113 vs 34 ms per SFace face at batch 32, 2 threads, on a loaded machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        # In batches of ``batch``: a teacher on a whole 512-crop chunk at once holds gigabytes in ORT's arena.
        outs = []
        for lo in range(0, len(crops), batch):
            part = crops[lo : lo + batch].transpose(0, 3, 1, 2).astype(np.float32)
            outs.append(np.asarray(session.run(None, {name: part})[0], dtype=np.float32))
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    return run


class ViewCache:
    """One folder of ``<name>/v<view>.npy`` arrays over a fixed image list, filled resumably."""

    def __init__(self, root: Path, landmarks: Landmarks) -> None:
        self.root = root
        self.landmarks = landmarks
        self.valid = ~np.isnan(landmarks.points[:, 0, 0])
        root.mkdir(parents=True, exist_ok=True)
        index = {"files": landmarks.files}
        index_path = root / "index.json"
        if not index_path.exists():  # written whole or not at all: runs started side by side read it at once
            part = index_path.with_name(f"index.json.{os.getpid()}.part")
            part.write_text(json.dumps(index))
            os.replace(part, index_path)
        elif json.loads(index_path.read_text())["files"] != landmarks.files:
            raise RuntimeError(f"{root} was built for another image list; move it away to rebuild")

    def path(self, name: str, view: int) -> Path:
        return self.root / name / f"v{view:02d}.npy"

    def done(self, name: str, view: int) -> int:
        marker = self.path(name, view).with_suffix(".progress")
        return int(marker.read_text()) if marker.exists() else 0

    def complete(self, name: str, view: int) -> bool:
        return self.done(name, view) >= len(self.landmarks.files)

    def load(self, name: str, view: int) -> NDArray[Any]:
        """A memory map of one output: ``(N, H, W, 3)`` uint8 crops or ``(N, D)`` float16 model outputs."""
        if not self.complete(name, view):
            raise FileNotFoundError(f"cache {self.path(name, view)} is incomplete: run the features stage")
        mapped: NDArray[Any] = np.load(self.path(name, view), mmap_mode="r")
        return mapped

    def build(
        self,
        view: int,
        outputs: Mapping[str, tuple[CropSpec, Runner | None]],
        seed: int = 0,
    ) -> None:
        """Fill view ``view`` for every output: name -> (crop, runner or None to store the uint8 crops)."""
        todo = {n: spec for n, spec in outputs.items() if not self.complete(n, view)}
        if not todo:
            return
        n = len(self.landmarks.files)
        arrays = {}
        for name, (crop, runner) in todo.items():
            path = self.path(name, view)
            path.parent.mkdir(parents=True, exist_ok=True)
            shape: tuple[int, ...]
            dtype: type[np.uint8] | type[np.float16]
            if runner is None:
                shape, dtype = (n, crop.size[1], crop.size[0], 3), np.uint8
            else:
                probe = runner(np.zeros((1, crop.size[1], crop.size[0], 3), np.uint8))
                shape, dtype = (n, probe.shape[1]), np.float16
            mode = "r+" if path.exists() else "w+"
            arrays[name] = np.lib.format.open_memmap(path, mode=mode, dtype=dtype, shape=shape)
        start = min(self.done(name, view) for name in todo)
        bar = tqdm(total=n, initial=start, desc=f"view {view} {'+'.join(todo)}", unit="img", mininterval=10)
        for lo in range(start - start % CHUNK, n, CHUNK):
            hi = min(lo + CHUNK, n)
            crops = self._crops(lo, hi, view, seed, {name: spec[0] for name, spec in todo.items()})
            for name, (_, runner) in todo.items():
                arrays[name][lo:hi] = crops[name] if runner is None else runner(crops[name])
                arrays[name].flush()
                self.path(name, view).with_suffix(".progress").write_text(str(hi))
            bar.update(hi - max(lo, bar.n))
        bar.close()

    def _crops(
        self, lo: int, hi: int, view: int, seed: int, specs: dict[str, CropSpec]
    ) -> dict[str, NDArray[np.uint8]]:
        out = {name: np.zeros((hi - lo, s.size[1], s.size[0], 3), np.uint8) for name, s in specs.items()}
        crops = {name: (s.template, s.size) for name, s in specs.items()}
        faces = np.flatnonzero(self.valid)
        for i in range(lo, hi):
            if not self.valid[i]:
                continue  # no face found: left black, masked out by ``valid``
            image: Image.Image = load_rgb(self.landmarks.files[i])
            v = view_for(i, view, seed)
            partner = None
            if v.mix is not None:
                j = int(faces[min(int(v.mix.partner * len(faces)), len(faces) - 1)])
                partner = (load_rgb(self.landmarks.files[j]), self.landmarks.points[j])
            rng = np.random.default_rng([seed, i, view, 1])  # the noise of a rich view
            made = render_view(image, self.landmarks.points[i], crops, v, rng, partner)
            for name in specs:
                out[name][i - lo] = made[name]
        return out
