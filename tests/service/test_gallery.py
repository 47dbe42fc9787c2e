"""The gallery over HTTP, on both backends (a SQLite file; a PostgreSQL + pgvector the test run starts itself).

Real app, real models, real LFW photos: enrol -> identify, unknown people, deletes, paging, isolation by API
key, and the same typed errors as /verify for bad photos.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from conftest import GROUP, encode, error_of, part
from fastapi.testclient import TestClient
from gallery_fixtures import gallery_url, postgres_server  # noqa: F401 - fixtures
from PIL import Image

# (name, photo enrolled, another photo of the same person)
PEOPLE = [
    ("Colin Powell", "Colin_Powell_0040.jpg", "Colin_Powell_0071.jpg"),
    ("Laura Bush", "Laura_Bush_0001.jpg", "Laura_Bush_0021.jpg"),
    ("Serena Williams", "Serena_Williams_0001.jpg", "Serena_Williams_0014.jpg"),
    ("George W Bush", "George_W_Bush_0007.jpg", "George_W_Bush_0016.jpg"),
    ("Jennifer Aniston", "Jennifer_Aniston_0001.jpg", "Jennifer_Aniston_0003.jpg"),
]
STRANGER = "Hugo_Chavez_0002.jpg"  # never enrolled


@pytest.fixture
def gallery(
    make_client: Callable[..., AbstractContextManager[TestClient]],
    gallery_url: str,  # noqa: F811
) -> Iterator[TestClient]:
    with make_client(gallery_url=gallery_url) as client:
        yield client


def create(client: TestClient, name: str, **kwargs: Any) -> str:
    response = client.post("/subjects", json={"name": name}, **kwargs)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
    subject_id: str = response.json()["id"]
    return subject_id


def enrol(client: TestClient, subject_id: str, photo: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post(f"/subjects/{subject_id}/faces", files={"image": part(photo)}, **kwargs)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def identify(client: TestClient, photo: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/identify", files={"image": part(photo)}, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def enrol_people(client: TestClient) -> dict[str, str]:
    ids = {}
    for name, photo, _ in PEOPLE:
        ids[name] = create(client, name)
        face = enrol(client, ids[name], photo)
        assert face["faces_detected"] == 1 and len(face["box"]) == 4 and face["face_id"]
    return ids


def test_enrol_then_identify_finds_each_subject(gallery: TestClient) -> None:
    ids = enrol_people(gallery)
    for name, _, probe in PEOPLE:
        answer = identify(gallery, probe)
        assert answer["identified"] is True, answer
        assert answer["subject"] == {"id": ids[name], "name": name}
        assert answer["matches"][0]["subject"] == answer["subject"]
        similarities = [m["similarity"] for m in answer["matches"]]
        assert similarities == sorted(similarities, reverse=True) and len(similarities) == len(PEOPLE)
        assert similarities[0] >= answer["threshold"] > similarities[1]
        assert answer["model"]["sha256"] and 0 <= answer["search_ms"] <= answer["took_ms"]
    assert len(identify(gallery, PEOPLE[0][2], params={"top_k": 2})["matches"]) == 2


def test_unknown_person_is_not_identified(gallery: TestClient) -> None:
    enrol_people(gallery)
    answer = identify(gallery, STRANGER)
    assert answer["identified"] is False and answer["subject"] is None
    assert answer["matches"] and answer["matches"][0]["similarity"] < answer["threshold"]
    # The threshold is the request's when given: at -1 the best match is identified.
    assert identify(gallery, STRANGER, data={"threshold": "-1"})["identified"] is True


def test_identify_takes_a_published_operating_point_like_verify(gallery: TestClient) -> None:
    enrol_people(gallery)
    points = gallery.get("/info").json()["operating_points"]["rates"]
    strict, loose = min(points, key=lambda p: p["far"]), max(points, key=lambda p: p["far"])
    answer = identify(gallery, PEOPLE[0][2], data={"far": str(loose["far"])})
    assert answer["threshold"] == pytest.approx(loose["threshold"])
    assert identify(gallery, PEOPLE[0][2], data={"far": str(strict["far"])})["threshold"] == pytest.approx(
        strict["threshold"]
    )
    response = gallery.post("/identify", files={"image": part(PEOPLE[0][2])}, data={"far": "0.5"})
    assert "not a published operating point" in error_of(response, 422, "invalid_request")["message"]
    both = gallery.post("/identify", files={"image": part(PEOPLE[0][2])}, data={"far": "0.001", "threshold": "0.5"})
    error_of(both, 422, "invalid_request")


def test_empty_gallery_identifies_nobody(gallery: TestClient) -> None:
    answer = identify(gallery, PEOPLE[0][1])
    assert answer["identified"] is False and answer["matches"] == []


def test_one_match_per_subject_with_several_faces(gallery: TestClient) -> None:
    colin = create(gallery, "Colin Powell")
    enrol(gallery, colin, "Colin_Powell_0040.jpg")
    enrol(gallery, colin, "Colin_Powell_0071.jpg")
    create_and_enrol = create(gallery, "Laura Bush")
    enrol(gallery, create_and_enrol, "Laura_Bush_0001.jpg")
    answer = identify(gallery, "Colin_Powell_0071.jpg")
    assert [m["subject"]["id"] for m in answer["matches"]] == [colin, create_and_enrol]
    assert answer["matches"][0]["similarity"] > 0.99  # the very photo is enrolled
    assert gallery.get(f"/subjects/{colin}").json()["faces"] == 2


def test_delete_removes_from_search(gallery: TestClient) -> None:
    ids = enrol_people(gallery)
    colin, laura = ids["Colin Powell"], ids["Laura Bush"]
    assert gallery.delete(f"/subjects/{colin}").status_code == 204
    answer = identify(gallery, PEOPLE[0][2])
    assert colin not in [m["subject"]["id"] for m in answer["matches"]] and answer["subject"] is None
    error_of(gallery.get(f"/subjects/{colin}"), 404, "not_found")
    # Deleting a subject's only face: the subject stays, but is no longer found.
    (face,) = gallery.get(f"/subjects/{laura}/faces").json()["faces"]
    assert gallery.delete(f"/subjects/{laura}/faces/{face['face_id']}").status_code == 204
    assert gallery.get(f"/subjects/{laura}").json()["faces"] == 0
    assert laura not in [m["subject"]["id"] for m in identify(gallery, PEOPLE[1][2])["matches"]]
    verify = gallery.post(f"/subjects/{laura}/verify", files={"image": part(PEOPLE[1][2])})
    error_of(verify, 409, "no_enrolled_faces")


def test_subject_verify(gallery: TestClient) -> None:
    ids = enrol_people(gallery)
    colin = ids["Colin Powell"]
    same = gallery.post(f"/subjects/{colin}/verify", files={"image": part(PEOPLE[0][2])})
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["verified"] is True and body["similarity"] >= body["threshold"]
    assert body["subject"] == {"id": colin, "name": "Colin Powell"} and body["faces_compared"] == 1
    assert body["faces"][0]["faces_detected"] == 1 and body["model"]["name"]
    other = gallery.post(f"/subjects/{colin}/verify", files={"image": part(PEOPLE[2][2])}).json()
    assert other["verified"] is False and other["similarity"] < other["threshold"]
    strict = gallery.post(f"/subjects/{colin}/verify", files={"image": part(PEOPLE[2][2])}, data={"threshold": "-1"})
    assert strict.json()["verified"] is True and strict.json()["threshold"] == -1


def test_paging(gallery: TestClient) -> None:
    ids = [create(gallery, f"person {i}") for i in range(7)]
    seen = []
    for offset in (0, 3, 6):
        page = gallery.get("/subjects", params={"limit": 3, "offset": offset}).json()
        assert page["total"] == 7 and page["limit"] == 3 and page["offset"] == offset
        seen += [s["id"] for s in page["subjects"]]
    assert seen == ids  # oldest first, each once
    assert gallery.get("/subjects", params={"offset": 7}).json()["subjects"] == []
    assert gallery.get("/subjects").json()["total"] == 7
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        error_of(gallery.get("/subjects", params=params), 422, "invalid_request")


def test_unknown_ids_are_not_found(gallery: TestClient) -> None:
    subject = create(gallery, "someone")
    missing = "00000000-0000-0000-0000-000000000000"
    error_of(gallery.get(f"/subjects/{missing}"), 404, "not_found")
    error_of(gallery.delete(f"/subjects/{missing}"), 404, "not_found")
    error_of(gallery.get(f"/subjects/{missing}/faces"), 404, "not_found")
    error_of(gallery.post(f"/subjects/{missing}/faces", files={"image": part(PEOPLE[0][1])}), 404, "not_found")
    error_of(gallery.post(f"/subjects/{missing}/verify", files={"image": part(PEOPLE[0][1])}), 404, "not_found")
    error_of(gallery.delete(f"/subjects/{subject}/faces/{missing}"), 404, "not_found")
    error_of(gallery.get("/subjects/not-even-a-uuid"), 404, "not_found")


def test_each_api_key_sees_only_its_own_gallery(
    make_client: Callable[..., AbstractContextManager[TestClient]],
    gallery_url: str,  # noqa: F811
) -> None:
    first, second = {"X-API-Key": "key-one"}, {"X-API-Key": "key-two"}
    with make_client(gallery_url=gallery_url, api_keys="key-one,key-two") as client:
        colin = create(client, "Colin Powell", headers=first)
        enrol(client, colin, PEOPLE[0][1], headers=first)
        assert identify(client, PEOPLE[0][2], headers=first)["subject"]["id"] == colin
        # The other key: an empty gallery, and the first key's subject does not exist for it.
        assert client.get("/subjects", headers=second).json()["total"] == 0
        assert identify(client, PEOPLE[0][2], headers=second)["matches"] == []
        error_of(client.get(f"/subjects/{colin}", headers=second), 404, "not_found")
        error_of(client.get(f"/subjects/{colin}/faces", headers=second), 404, "not_found")
        error_of(
            client.post(f"/subjects/{colin}/faces", files={"image": part(PEOPLE[1][1])}, headers=second),
            404,
            "not_found",
        )
        error_of(
            client.post(f"/subjects/{colin}/verify", files={"image": part(PEOPLE[0][2])}, headers=second),
            404,
            "not_found",
        )
        error_of(client.delete(f"/subjects/{colin}", headers=second), 404, "not_found")
        laura = create(client, "Laura Bush", headers=second)
        assert [s["id"] for s in client.get("/subjects", headers=first).json()["subjects"]] == [colin]
        assert [s["id"] for s in client.get("/subjects", headers=second).json()["subjects"]] == [laura]
        # No key at all: 401, as everywhere.
        error_of(client.get("/subjects"), 401, "unauthorized")
        error_of(client.post("/identify", files={"image": part(PEOPLE[0][2])}), 401, "unauthorized")


GREY = encode(Image.new("RGB", (250, 250), (128, 128, 128)), "JPEG")
ROUTES = ["/subjects/{id}/faces", "/identify", "/subjects/{id}/verify"]


@pytest.mark.parametrize("route", ROUTES)
def test_bad_photos_get_the_same_errors_as_verify(gallery: TestClient, route: str) -> None:
    subject = create(gallery, "Colin Powell")
    enrol(gallery, subject, PEOPLE[0][1])
    path = route.format(id=subject)
    cases = [
        ({"image": ("grey.jpg", GREY, "image/jpeg")}, {}, 422, "no_face"),
        ({"image": part(GROUP)}, {"require_single_face": "true"}, 422, "multiple_faces"),
        ({"image": ("bad.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")}, {}, 400, "invalid_image"),
        ({"image": ("notes.txt", b"hello, not a photo", "text/plain")}, {}, 415, "unsupported_media_type"),
        ({"image": ("empty.jpg", b"", "image/jpeg")}, {}, 400, "invalid_image"),
    ]
    for files, data, status, code in cases:
        ours = gallery.post(path, files=files, data=data)
        theirs = gallery.post("/verify", files={"image1": files["image"], "image2": part(PEOPLE[0][2])}, data=data)
        assert error_of(ours, status, code)["field"] == "image"
        error_of(theirs, status, code)
    error_of(gallery.post(path, files={"other": part(PEOPLE[0][1])}), 422, "invalid_request")
    error_of(
        gallery.post(path, content=b"{}", headers={"Content-Type": "application/json"}), 415, "unsupported_media_type"
    )
    if route != ROUTES[0]:  # the searches take a threshold
        bad = gallery.post(path, files={"image": part(PEOPLE[0][1])}, data={"threshold": "2"})
        assert error_of(bad, 422, "invalid_request")["field"] == "threshold"
    assert gallery.get(f"/subjects/{subject}").json()["faces"] == 1  # nothing bad was enrolled


def test_bad_subject_bodies(gallery: TestClient) -> None:
    for body in ({}, {"name": ""}, {"name": 5}, {"name": "x", "extra": 1}, {"name": "x" * 257}):
        error_of(gallery.post("/subjects", json=body), 422, "invalid_request")
    error_of(
        gallery.post("/subjects", content=b"{oops", headers={"Content-Type": "application/json"}),
        422,
        "invalid_request",
    )
    error_of(gallery.post("/subjects", data={"name": "x"}), 415, "unsupported_media_type")
    error_of(
        gallery.post("/identify", files={"image": part(PEOPLE[0][1])}, data={"top_k": "0"}), 422, "invalid_request"
    )
