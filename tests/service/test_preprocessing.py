"""Crops and input tensors: the anti-aliased alignment path and the manifest's normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, SAME
from PIL import Image

from service.alignment import ARCFACE_112, align, align_antialiased
from service.manifest import InputSpec
from service.preprocessing import to_tensor

TEMPLATE = np.asarray(ARCFACE_112)
# Landmarks of SAME[0][0] as YuNet finds them (rounded): a face at about the template's scale.
LANDMARKS = np.array([[97.95, 111.57], [157.82, 110.52], [130.89, 147.49], [100.95, 172.87], [154.35, 173.34]])


def photo() -> Image.Image:
    return Image.open(DATA / SAME[0][0]).convert("RGB")


def test_faces_at_crop_scale_take_the_plain_path() -> None:
    image = photo()
    assert np.array_equal(
        align_antialiased(image, LANDMARKS, TEMPLATE, (112, 112)), align(image, LANDMARKS, TEMPLATE, (112, 112))
    )


def test_large_faces_are_reduced_before_warping() -> None:
    image, factor = photo(), 6
    big = np.asarray(image.resize((250 * factor, 250 * factor), Image.Resampling.BICUBIC), dtype=np.int16)
    # Fine detail the 112-pixel crop cannot hold (a 1-pixel checkerboard): it must average out, not alias.
    checker = (np.indices(big.shape[:2]).sum(axis=0) % 2 * 2 - 1)[..., None] * 40
    big = Image.fromarray(np.clip(big + checker, 0, 255).astype(np.uint8))
    landmarks = (LANDMARKS + 0.5) * factor - 0.5
    reference = align(image, LANDMARKS, TEMPLATE, (112, 112)).astype(np.float32)
    smooth = align_antialiased(big, landmarks, TEMPLATE, (112, 112)).astype(np.float32)
    aliased = align(big, landmarks, TEMPLATE, (112, 112)).astype(np.float32)
    # The reduced path lands on the same crop as aligning the photo at its natural size...
    assert np.abs(smooth - reference).mean() < 4.0
    # ...while sampling the big photo directly picks up the checkerboard.
    assert np.abs(aliased - reference).mean() > 2 * np.abs(smooth - reference).mean()


def spec(**fields: object) -> InputSpec:
    return InputSpec.model_validate(
        {"name": "x", "width": 2, "height": 1, "template": ARCFACE_112, "preprocessing": 1, **fields}
    )


def test_to_tensor_layout_colour_and_normalisation() -> None:
    crops = np.array([[[[10, 20, 30], [40, 50, 60]]]], dtype=np.uint8)  # (1, 1, 2, 3)
    plain = to_tensor(crops, spec())
    assert plain.shape == (1, 3, 1, 2) and plain.dtype == np.float32 and plain.flags.c_contiguous
    assert plain[0, :, 0, 0].tolist() == [10, 20, 30]
    bgr = to_tensor(crops, spec(colour_order="BGR", mean=[127.5] * 3, std=[128.0] * 3))
    assert bgr[0, :, 0, 1] == pytest.approx([(60 - 127.5) / 128, (50 - 127.5) / 128, (40 - 127.5) / 128])
