"""Embed a list of images through the service's alignment and a model runner (teacher or student)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from training.data.feature_cache import CropSpec, Runner, onnx_runner
from training.data.landmarks import Landmarks
from training.data.sets import load_rgb
from training.data.views import crop_view
from training.paths import CACHE


def aligned_crops(landmarks: Landmarks, spec: CropSpec, indices: NDArray[np.int64] | None = None) -> NDArray[np.uint8]:
    """``(N, H, W, 3)`` aligned crops (black where no face was found)."""
    indices = np.arange(len(landmarks.files)) if indices is None else indices
    out = np.zeros((len(indices), spec.size[1], spec.size[0], 3), np.uint8)
    for k, i in enumerate(tqdm(indices, desc=f"crop {spec.name}", unit="img", mininterval=10, leave=False)):
        if not np.isnan(landmarks.points[i, 0, 0]):
            out[k] = crop_view(load_rgb(landmarks.files[i]), landmarks.points[i], spec.template, spec.size)
    return out


def embed_crops(
    crops: NDArray[np.uint8], runner: Runner, flip_average: bool = False, batch: int = 64
) -> NDArray[np.float32]:
    """Run ``runner`` over crops in batches; with ``flip_average`` add the mirror image's output."""
    outs = []
    for lo in range(0, len(crops), batch):
        part = crops[lo : lo + batch]
        out = runner(part)
        if flip_average:
            out = out + runner(np.ascontiguousarray(part[:, :, ::-1]))
        outs.append(out)
    return np.concatenate(outs).astype(np.float32)


def lfw_teacher_raw(
    name: str, crop: CropSpec, model: Path, lfw: Landmarks, needed: NDArray[np.int64]
) -> NDArray[np.float32]:
    """``(N, dim)`` raw outputs of teacher ``name`` on LFW (rows ``needed`` filled; the rest zero), cached per teacher
    in ``CACHE/features/lfw/<name>.npz`` and extended when a caller needs more images. Evaluation and the data
    stage's LFW filter only: LFW never trains anything."""
    path = CACHE / "features" / "lfw" / f"{name}.npz"
    cached = dict(np.load(path)) if path.exists() else {}
    if not cached or not set(needed.tolist()) <= set(cached["index"].tolist()):
        raw = embed_crops(aligned_crops(lfw, crop, needed), onnx_runner(model))
        path.parent.mkdir(parents=True, exist_ok=True)
        cached = {"index": needed, "raw": raw}
        np.savez(path, **cached)
    full = np.zeros((len(lfw.files), cached["raw"].shape[1]), np.float32)
    full[cached["index"]] = cached["raw"]
    return full
