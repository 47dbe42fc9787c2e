"""dlib ResNet-29 in PyTorch/ONNX against dlib itself, on real face chips."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import pytest
import torch
from PIL import Image

from service.manifest import sha256_of
from training.export import parity
from training.paths import DATA, MODELS
from training.teachers.dlib_resnet import (
    CHIP_SIZE,
    DLIB_150_TEMPLATE,
    DlibFormatError,
    dlib_component,
    dlib_model_path,
    export_dlib_onnx,
    load_dlib_resnet,
    read_dlib_dat,
)

LFW = DATA / "lfw" / "images_deepfunneled"
LFW_PHOTOS = [
    "AJ_Lamas_0001",
    "Daniel_Osorno_0001",
    "Jacqueline_Gold_0001",
    "Lleyton_Hewitt_0016",
    "Rainer_Schuettler_0001",
]
POOL_PHOTOS = [
    "celeba/img_align_celeba_89x109/000001.jpg",
    "celeba/img_align_celeba_89x109/000002.jpg",
    "pool/celeba_wild_128/010129.jpg",
    "pool/celeba_wild_128/010205.jpg",
    "pool/celeba_wild_128/010224.jpg",
]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.set_num_threads(2)
    return load_dlib_resnet()


@pytest.fixture(scope="module")
def dlib_tools() -> tuple:
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
    return detector, predictor, dlib.face_recognition_model_v1(str(dlib_model_path()))


def _photo(path: Path) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"shared data not available: {path}")
    return np.asarray(Image.open(path).convert("RGB"))


def _dlib_chip(image: np.ndarray, dlib_tools: tuple) -> np.ndarray:
    detector, predictor, _ = dlib_tools
    rects = detector(image, 1) or detector(image, 2)
    assert rects, "dlib's HOG detector found no face"
    shape = predictor(image, max(rects, key=lambda r: r.area()))
    return np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=0.25))


def _embed(model: torch.nn.Module, chips: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()).numpy()


@pytest.fixture(scope="module")
def lfw_chips(dlib_tools: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Five dlib face chips ``(5, 150, 150, 3)`` and dlib's own descriptors of them ``(5, 128)``."""
    chips = [_dlib_chip(_photo(LFW / name.rsplit("_", 1)[0] / f"{name}.jpg"), dlib_tools) for name in LFW_PHOTOS]
    reference = [np.array(dlib_tools[2].compute_face_descriptor(chip)) for chip in chips]
    return np.stack(chips), np.stack(reference).astype(np.float32)


def test_reader_walks_the_whole_file() -> None:
    net = read_dlib_dat()
    kinds = [layer.kind for layer in net.layers]
    assert (kinds.count("con"), kinds.count("affine"), kinds.count("add_prev"), kinds.count("fc")) == (29, 29, 14, 1)
    assert sum(layer.params.size for layer in net.layers if layer.params is not None) == 5_614_592
    assert net.size == (150, 150)
    np.testing.assert_allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)


def test_reader_rejects_a_truncated_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dat"
    data = dlib_model_path().read_bytes()
    broken.write_bytes(data[:-100])
    with pytest.raises(DlibFormatError, match="file ends"):
        read_dlib_dat(broken)
    broken.write_bytes(data + b"\x00")
    with pytest.raises(DlibFormatError, match="unread bytes"):
        read_dlib_dat(broken)


def test_module_matches_dlib_on_real_chips(model: torch.nn.Module, lfw_chips: tuple) -> None:
    chips, reference = lfw_chips
    assert np.abs(_embed(model, list(chips)) - reference).max() < 1e-4


def test_onnx_export_matches_pytorch_and_dlib(model: torch.nn.Module, lfw_chips: tuple, tmp_path: Path) -> None:
    import onnxruntime as ort

    path = export_dlib_onnx(tmp_path / "dlib.onnx")
    assert parity(model, path, CHIP_SIZE) < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    chips, reference = lfw_chips
    x = chips.transpose(0, 3, 1, 2).astype(np.float32)
    (batch,) = session.run(["embedding"], {"input": x})
    (single,) = session.run(["embedding"], {"input": x[:1]})  # the batch axis is dynamic
    assert batch.shape == (5, 128)
    assert np.abs(batch - reference).max() < 1e-4
    assert np.abs(single[0] - reference[0]).max() < 1e-4

    component = dlib_component(path, relative_to=tmp_path)  # validated by the manifest's schema
    assert component.file == "dlib.onnx" and component.sha256 == sha256_of(path)
    assert (component.input.name, component.input.width, component.input.height) == ("input", 150, 150)
    assert (component.input.colour_order, component.input.mean, component.input.std) == ("RGB", (0, 0, 0), (1, 1, 1))
    assert component.input.template == [tuple(p) for p in DLIB_150_TEMPLATE]
    assert (component.output.name, component.output.dim) == ("embedding", 128)


def test_template_alignment_approximates_dlib_chips(model: torch.nn.Module, dlib_tools: tuple) -> None:
    """Our YuNet + DLIB_150_TEMPLATE crops give dlib descriptors close to those of dlib's own chips."""
    import onnxruntime as ort

    from service.alignment import align
    from service.detection import FaceDetector, main_face_index

    detector = FaceDetector(
        ort.InferenceSession(str(MODELS / "yunet_2023mar_fp32.onnx"), providers=["CPUExecutionProvider"])
    )
    ours, theirs = [], []
    for name in POOL_PHOTOS:
        image = _photo(DATA / name)
        faces = detector.detect(image)
        face = faces[main_face_index(faces, *image.shape[:2])]
        ours.append(align(Image.fromarray(image), face.landmarks, np.array(DLIB_150_TEMPLATE), (150, 150)))
        theirs.append(_dlib_chip(image, dlib_tools))
    distance = np.linalg.norm(_embed(model, ours) - _embed(model, theirs), axis=1)
    # Measured 0.19 on average over 206 pool faces; a wrong template (e.g. ArcFace's, scaled) gives ~0.63.
    assert distance.mean() < 0.35, distance
