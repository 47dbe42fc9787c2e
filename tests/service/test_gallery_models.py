"""Model identity in the gallery: a gallery of another model answers gallery_model_mismatch; re-embedding fixes it.

Also: every gallery route in the OpenAPI document with its typed errors, and the embedded gallery's
one-process lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, error_of, part
from fastapi.testclient import TestClient
from gallery_fixtures import gallery_url, postgres_server  # noqa: F401 - fixtures
from test_gallery import create, enrol, identify

from service.config import Settings
from service.engine import Engine
from service.gallery import model_id, open_store
from service.gallery.store import StoreUnavailable

OTHER_MODEL = "mobileid-ensemble-fast"  # committed, same embedding size, another sha256


def reembed(manifest: Path, gallery: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACE_")}
    env.update(FACE_MANIFEST=str(manifest), FACE_MODEL=OTHER_MODEL, FACE_GALLERY_URL=gallery)
    return subprocess.run(
        [sys.executable, "-m", "service.gallery", "reembed", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_other_model_answers_mismatch_until_reembedded(
    make_client: Callable[..., AbstractContextManager[TestClient]],
    manifest_path: Path,
    gallery_url: str,  # noqa: F811
) -> None:
    with make_client(gallery_url=gallery_url, gallery_keep_crops=True) as served:
        served_model = served.get("/info").json()["name"]
        colin = create(served, "Colin Powell")
        assert enrol(served, colin, "Colin_Powell_0040.jpg")["model"]["name"] == served_model
    with make_client(gallery_url=gallery_url) as served:  # crops not kept any more
        laura = create(served, "Laura Bush")
        enrol(served, laura, "Laura_Bush_0001.jpg")
        assert [f["crop_stored"] for f in served.get(f"/subjects/{colin}/faces").json()["faces"]] == [True]
        assert [f["crop_stored"] for f in served.get(f"/subjects/{laura}/faces").json()["faces"]] == [False]

    with make_client(gallery_url=gallery_url, model=OTHER_MODEL) as other:
        mismatch = error_of(
            other.post("/identify", files={"image": part("Colin_Powell_0071.jpg")}), 409, "gallery_model_mismatch"
        )
        assert served_model in mismatch["message"] and OTHER_MODEL in mismatch["message"]
        assert "2 face(s) of 2 subject(s)" in mismatch["message"] and "reembed" in mismatch["message"]
        verify = other.post(f"/subjects/{colin}/verify", files={"image": part("Colin_Powell_0071.jpg")})
        assert served_model in error_of(verify, 409, "gallery_model_mismatch")["message"]
        assert other.get("/subjects").json()["total"] == 2  # the records themselves are still readable

    dry = reembed(manifest_path, gallery_url, "--dry-run")
    assert dry.returncode == 1 and "1 with a stored crop, 1 without" in dry.stdout, dry.stdout + dry.stderr
    done = reembed(manifest_path, gallery_url)
    assert done.returncode == 1, done.stdout + done.stderr  # Laura's face has no crop: she needs re-enrolment
    assert "re-embedded 1 face(s)" in done.stdout and laura in done.stdout and colin not in done.stdout

    with make_client(gallery_url=gallery_url, model=OTHER_MODEL) as other:
        error_of(other.post("/identify", files={"image": part("Colin_Powell_0071.jpg")}), 409, "gallery_model_mismatch")
        (face,) = other.get(f"/subjects/{laura}/faces").json()["faces"]
        assert other.delete(f"/subjects/{laura}/faces/{face['face_id']}").status_code == 204
        (colin_face,) = other.get(f"/subjects/{colin}/faces").json()["faces"]
        assert colin_face["model"]["name"] == OTHER_MODEL
        # The embedding made from the kept crop is (nearly) the one the new model makes from the photo.
        direct = create(other, "Colin Powell, enrolled with the new model")
        enrol(other, direct, "Colin_Powell_0040.jpg")
        matches = {m["subject"]["id"]: m["similarity"] for m in identify(other, "Colin_Powell_0040.jpg")["matches"]}
        assert matches[direct] > 0.999 and matches[colin] > 0.95, matches
    nothing_left = reembed(manifest_path, gallery_url, "--dry-run")
    assert nothing_left.returncode == 0 and "0 face(s) of other models" in nothing_left.stdout


def test_embedded_gallery_is_held_by_one_process(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(gallery_url=f"sqlite:///{tmp_path / 'gallery.db'}")
    engine = Engine.load(settings)
    first = open_store(settings, engine.card)
    try:
        with pytest.raises(StoreUnavailable, match="in use by another process"):
            open_store(settings, engine.card)
    finally:
        first.close()
    open_store(settings, engine.card).close()  # free again once closed


def test_unreachable_postgres_stops_start_up(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from service.gallery.postgres import PostgresStore

    card = Engine.load(make_settings()).card
    url = f"postgresql://nobody@/none?host={tmp_path}&connect_timeout=1"
    with pytest.raises(StoreUnavailable, match="cannot open the PostgreSQL gallery"):
        PostgresStore(url, model_id(card), card.dim, open_timeout=2)


GALLERY_ROUTES = {
    ("/subjects", "post"): {"401", "415", "422"},
    ("/subjects", "get"): {"401", "422"},
    ("/subjects/{subject_id}", "get"): {"401", "404"},
    ("/subjects/{subject_id}", "delete"): {"401", "404"},
    ("/subjects/{subject_id}/faces", "post"): {"400", "401", "404", "413", "415", "422", "503"},
    ("/subjects/{subject_id}/faces", "get"): {"401", "404"},
    ("/subjects/{subject_id}/faces/{face_id}", "delete"): {"401", "404"},
    ("/identify", "post"): {"400", "401", "409", "413", "415", "422", "503"},
    ("/subjects/{subject_id}/verify", "post"): {"400", "401", "404", "409", "413", "415", "422", "503"},
}


def test_every_gallery_route_is_documented_with_its_errors(client: TestClient) -> None:
    paths: dict[str, Any] = client.get("/openapi.json").json()["paths"]
    for (path, method), statuses in GALLERY_ROUTES.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, method, set(responses))
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }, (path, status)
    identify_fields = {p["name"] for p in paths["/identify"]["post"]["parameters"]}
    assert {"top_k", "threshold", "require_single_face"} <= identify_fields
    assert (
        "201" in paths["/subjects"]["post"]["responses"]
        and "204" in paths["/subjects/{subject_id}"]["delete"]["responses"]
    )
