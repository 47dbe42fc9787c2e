"""Start-up: a model file that does not match the manifest stops the service with a clear message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import COMMITTED_MANIFEST, edited_manifest
from fastapi.testclient import TestClient

from service.config import Settings
from service.engine import Engine
from service.main import create_app
from service.manifest import ManifestError, load_manifest


def served(data: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = data["models"][data["default_model"]]
    return model


def test_unchanged_copy_loads(manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    path = edited_manifest(manifest_path, tmp_path, lambda data: None)  # the helper itself breaks nothing
    engine = Engine.load(make_settings(manifest=path))
    assert engine.card.dim == sum(c.spec.output.dim for c in engine.components)


def test_wrong_sha256_stops_start_up(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        served(data)["components"][0]["sha256"] = "0" * 64

    app = create_app(make_settings(manifest=edited_manifest(manifest_path, tmp_path, corrupt)))
    with pytest.raises(ManifestError, match=r"sha256 .* expects 0{64}.*corrupt or the manifest is stale"):
        with TestClient(app):
            pass
    assert app.state.face.engine is None


def test_wrong_detector_sha256(manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        data["detector"]["sha256"] = "f" * 64

    with pytest.raises(ManifestError, match="yunet"):
        Engine.load(make_settings(manifest=edited_manifest(manifest_path, tmp_path, corrupt)))


def test_wrong_output_dim_stops_start_up(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    def wrong_dim(data: dict[str, Any]) -> None:
        served(data)["components"][0]["output"]["dim"] += 1

    settings = make_settings(manifest=edited_manifest(manifest_path, tmp_path, wrong_dim))
    with pytest.raises(ManifestError, match=r"has shape \(\d+, \d+\) .* manifest declares dim \d+"):
        with TestClient(create_app(settings)):
            pass


def test_wrong_input_name(manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    def rename(data: dict[str, Any]) -> None:
        served(data)["components"][0]["input"]["name"] = "no_such_input"

    with pytest.raises(ManifestError, match="no_such_input"):
        Engine.load(make_settings(manifest=edited_manifest(manifest_path, tmp_path, rename)))


def test_missing_manifest_and_unknown_model(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ManifestError, match="not found"):
        Engine.load(make_settings(manifest=tmp_path / "absent.json"))
    with pytest.raises(ManifestError, match="no-such-model"):
        Engine.load(make_settings(model="no-such-model"))


def test_missing_model_file(manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    def move(data: dict[str, Any]) -> None:
        served(data)["components"][0]["file"] = "gone.onnx"

    with pytest.raises(ManifestError, match="does not exist"):
        Engine.load(make_settings(manifest=edited_manifest(manifest_path, tmp_path, move)))


def test_an_unknown_key_stops_start_up(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    def typo(data: dict[str, Any]) -> None:
        served(data)["components"][0]["flip_avarage"] = True  # meant flip_average

    app = create_app(make_settings(manifest=edited_manifest(manifest_path, tmp_path, typo)))
    with pytest.raises(ManifestError, match=r"components\.0\.flip_avarage: unknown key"):
        with TestClient(app):
            pass
    assert app.state.face.engine is None


@pytest.mark.parametrize("file", ["/etc/passwd", "../models/yunet_2023mar_fp32.onnx", "sub/../../x.onnx", "C:\\x.onnx"])
def test_model_files_must_stay_in_the_manifests_folder(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings], file: str
) -> None:
    def escape(data: dict[str, Any]) -> None:
        data["detector"]["file"] = file

    with pytest.raises(ManifestError, match=r"detector\.file: .*(relative to the manifest|leaves the manifest)"):
        Engine.load(make_settings(manifest=edited_manifest(manifest_path, tmp_path, escape)))


def test_another_preprocessing_version_or_schema_is_refused(
    manifest_path: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    def newer_crops(data: dict[str, Any]) -> None:
        served(data)["components"][0]["input"]["preprocessing"] = 99

    with pytest.raises(ManifestError, match="preprocessing version 99 is not the one this service implements"):
        Engine.load(make_settings(manifest=edited_manifest(manifest_path, tmp_path, newer_crops)))

    def old_schema(data: dict[str, Any]) -> None:
        data["schema_version"] = 1

    with pytest.raises(ManifestError, match="schema_version 1; this service reads schema_version 2"):
        Engine.load(make_settings(manifest=edited_manifest(manifest_path, tmp_path, old_schema)))


def test_every_committed_model_loads(make_settings: Callable[..., Settings]) -> None:
    manifest = load_manifest(COMMITTED_MANIFEST)
    for name, spec in manifest.models.items():
        engine = Engine.load(make_settings(manifest=COMMITTED_MANIFEST, model=name))
        assert engine.card.dim == spec.dim and engine.card.threshold == spec.threshold
