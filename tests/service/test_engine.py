"""The engine on manifests shaped like the ones training publishes: flip averaging, several components."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from conftest import DATA, SAME, edited_manifest, photo
from PIL import Image

from service.config import Settings
from service.detection import main_face_index
from service.engine import Engine, Upload
from service.preprocessing import crop_face, to_tensor
from service.similarity import l2_normalise


def embed(engine: Engine, *images: bytes) -> np.ndarray[Any, Any]:
    uploads = [Upload(field=f"image[{i}]", data=data) for i, data in enumerate(images)]
    return np.stack([r.embedding for r in engine.analyse(uploads, require_single_face=False)])


def load(manifest_path: Path, folder: Path, settings: Callable[..., Settings], **component: Any) -> Engine:
    def edit(data: dict[str, Any]) -> None:
        model = data["models"][data["default_model"]]
        first = model["components"][0]
        first.update(component)
        model["components"] = [first]

    return Engine.load(settings(manifest=edited_manifest(manifest_path, folder, edit)))


def test_flip_average_adds_the_mirror_crop_output(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    engine = load(manifest_path, tmp_path, make_settings, flip_average=True)
    image = Image.open(DATA / SAME[1][0]).convert("RGB")
    faces = engine.detector.detect(np.asarray(image))
    face = faces[main_face_index(faces, image.height, image.width)]
    got = engine.embed([image], [face])[0]

    component = engine.components[0]
    crop = crop_face(image, face.landmarks, component.spec.input)
    raw = component.run(to_tensor(np.stack([crop, crop[:, ::-1]]), component.spec.input))
    assert np.allclose(got, l2_normalise(raw[0] + raw[1]), atol=1e-5)
    assert not np.allclose(got, l2_normalise(raw[0]), atol=1e-3)  # the mirror really contributed
    # And the whole pipeline agrees with embed() on the same photo.
    assert np.allclose(embed(engine, photo(SAME[1][0]))[0], got, atol=1e-6)
    assert engine.card.sha256 != component.spec.sha256  # served otherwise than one plain crop: its own identity


def test_components_are_concatenated_and_files_share_a_session(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    def two_components(data: dict[str, Any]) -> None:
        model = data["models"][data["default_model"]]
        second = copy.deepcopy(model["components"][0])
        second["flip_average"] = not second.get("flip_average", False)
        model["components"] = [model["components"][0], second]

    engine = Engine.load(make_settings(manifest=edited_manifest(manifest_path, tmp_path, two_components)))
    assert len({id(c.session) for c in engine.components}) == 1  # one session per model file
    dim = engine.components[0].spec.output.dim
    assert engine.card.dim == 2 * dim and engine.card.sha256 != engine.components[0].spec.sha256
    vectors = embed(engine, photo(SAME[0][0]), photo(SAME[0][1]))
    assert vectors.shape == (2, 2 * dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Each component's part was normalised before concatenation: both halves weigh the same.
    assert np.allclose(np.linalg.norm(vectors[:, :dim], axis=1), np.sqrt(0.5), atol=1e-5)


def test_test_time_shifts_add_the_outputs_of_the_moved_crops(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    shifts = [(1.5, 0.0), (-1.5, 0.0), (0.0, 1.5), (0.0, -1.5)]
    engine = load(manifest_path, tmp_path, make_settings, shifts=shifts, flip_average=True)
    image = Image.open(DATA / SAME[1][0]).convert("RGB")
    faces = engine.detector.detect(np.asarray(image))
    face = faces[main_face_index(faces, image.height, image.width)]
    got = engine.embed([image], [face])[0]

    component = engine.components[0]
    base = component.spec.input
    crops = []
    for dx, dy in shifts:  # by hand: the template moved in crop pixels, each crop and its mirror image
        moved = base.model_copy(update={"template": [(x + dx, y + dy) for x, y in base.template]})
        crop = crop_face(image, face.landmarks, moved)
        crops += [crop, crop[:, ::-1]]
    raw = component.run(to_tensor(np.stack(crops), base))
    assert np.allclose(got, l2_normalise(raw.sum(axis=0)), atol=1e-5)
    one = l2_normalise(component.run(to_tensor(crop_face(image, face.landmarks, base)[None], base))[0])
    assert not np.allclose(got, one, atol=1e-3)  # the moved crops really contributed
    # Two photos in one request: each face's crops are summed on their own, as embed() does one by one.
    both = embed(engine, photo(SAME[1][0]), photo(SAME[1][1]))
    assert np.allclose(both[0], got, atol=1e-6)
    assert np.allclose(both[1], embed(engine, photo(SAME[1][1]))[0], atol=1e-6)
    # Other crops, other embeddings: the served identity is not the file's.
    assert engine.card.sha256 != component.spec.sha256


def test_a_single_centred_shift_is_the_plain_crop(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "centred").mkdir()
    plain = load(manifest_path, tmp_path / "plain", make_settings)
    centred = load(manifest_path, tmp_path / "centred", make_settings, shifts=[(0.0, 0.0)])
    images = photo(SAME[0][0]), photo(SAME[0][1])
    assert np.allclose(embed(plain, *images), embed(centred, *images), atol=1e-6)
    assert plain.card.sha256 == plain.components[0].spec.sha256
