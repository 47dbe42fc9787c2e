"""A lone request's photos side by side: on real threads, in order, errors in order; one at a time under load."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import DATA, DIFFERENT, SAME, encode, error_of, part, photo
from PIL import Image

from service.config import Settings
from service.engine import Engine, Upload
from service.errors import InvalidImage
from service.fanout import Fanout
from service.memory import Trimmer

WAIT_S = 10.0


def test_lone_request_runs_its_items_at_once_in_order() -> None:
    fanout = Fanout(2)
    both = threading.Barrier(2, timeout=WAIT_S)  # broken (and the test fails) unless two items run at once
    threads: list[int] = []

    def work(item: int) -> int:
        threads.append(threading.get_ident())
        both.wait()
        return item * 10

    with fanout.request() as alone:
        assert alone
        assert fanout.map(work, [1, 2], spread=alone) == [10, 20]
    assert len(set(threads)) == 2 and threading.get_ident() in threads  # the caller took one item itself
    fanout.close()


def test_items_beyond_the_threads_are_shared_and_kept_in_order() -> None:
    fanout = Fanout(2)
    assert fanout.map(lambda x: x * x, list(range(9)), spread=True) == [x * x for x in range(9)]
    fanout.close()


def test_a_request_among_others_runs_its_items_in_its_own_thread() -> None:
    fanout = Fanout(2)
    seen: set[int] = set()

    def work(item: int) -> int:
        seen.add(threading.get_ident())
        return item

    with fanout.request() as first:
        with fanout.request() as second:  # a second request inside the engine meanwhile
            assert first and not second
            assert fanout.map(work, [1, 2, 3], spread=second) == [1, 2, 3]
    assert seen == {threading.get_ident()}
    with fanout.request() as again:
        assert again  # the count went back to zero
    fanout.close()


def test_one_thread_never_spreads() -> None:
    fanout = Fanout(1)
    seen: set[int] = set()
    fanout.map(lambda item: seen.add(threading.get_ident()), [1, 2], spread=True)
    assert seen == {threading.get_ident()}


def test_the_first_failing_item_in_order_is_raised_after_all_started_items_finish() -> None:
    fanout = Fanout(2)
    finished: list[int] = []
    second_started = threading.Event()

    def work(item: int) -> int:
        if item == 0:
            assert second_started.wait(WAIT_S)  # item 1 is under way on the other thread
            raise ValueError("item 0")
        second_started.set()
        finished.append(item)
        raise KeyError("item 1")

    with pytest.raises(ValueError, match="item 0"):
        fanout.map(work, [0, 1], spread=True)
    assert finished == [1]  # it had finished when map raised
    fanout.close()


def test_helpers_see_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    request_id.set("abc")
    fanout = Fanout(2)
    both = threading.Barrier(2, timeout=WAIT_S)

    def work(item: int) -> str:
        both.wait()
        return request_id.get()

    assert fanout.map(work, [1, 2], spread=True) == ["abc", "abc"]
    fanout.close()


def test_engine_answers_the_same_with_photos_side_by_side(make_settings: Callable[..., Settings]) -> None:
    apart = Engine.load(make_settings(photo_threads=1))
    together = Engine.load(make_settings(photo_threads=2))
    for first, second in (SAME[0], DIFFERENT[1]):
        uploads = [Upload("image1", photo(first)), Upload("image2", photo(second))]
        one, two = (
            apart.analyse(uploads, require_single_face=False),
            together.analyse(uploads, require_single_face=False),
        )
        for a, b in zip(one, two, strict=True):
            assert np.allclose(a.embedding, b.embedding, atol=1e-6)
            assert np.allclose(a.face.box, b.face.box) and a.faces_detected == b.faces_detected
    with pytest.raises(InvalidImage) as blamed:  # both photos bad: image1 is named, as one after the other
        together.analyse(
            [Upload("image1", b"\x00 no photo"), Upload("image2", b"\xff\xd8\xff")], require_single_face=False
        )
    assert blamed.value.field == "image1"


def test_verify_blames_the_first_bad_photo(make_client: Callable[..., Any]) -> None:
    with make_client(photo_threads=2) as client:
        files = {"image1": part(SAME[0][0]), "image2": ("x.jpg", b"\xff\xd8\xff\xe0 truncated", "image/jpeg")}
        assert error_of(client.post("/verify", files=files), 400, "invalid_image")["field"] == "image2"
        files = {
            "image1": ("x.jpg", b"\x00 no photo", "image/jpeg"),
            "image2": ("y.jpg", b"\xff\xd8\xff", "image/jpeg"),
        }
        assert error_of(client.post("/verify", files=files), 400, "invalid_image")["field"] == "image1"


def test_photos_that_fit_the_budget_only_one_at_a_time_go_one_at_a_time(make_client: Callable[..., Any]) -> None:
    # Two 4 MP PNGs (decoded in full: ~7 M pixels held each, with the detector's input): the 8 M budget holds
    # either, not both. Side by side, one would be refused at once (no wait); one after the other, both fit.
    def enlarged(name: str) -> tuple[str, bytes, str]:
        image = Image.open(DATA / name).convert("RGB").resize((2000, 2000), Image.Resampling.BICUBIC)
        return (name.replace(".jpg", ".png"), encode(image, "PNG", compress_level=1), "image/png")

    files = {"image1": enlarged(SAME[0][0]), "image2": enlarged(SAME[0][1])}
    with make_client(pixel_budget=8_000_000, pixel_budget_wait=0.0, photo_threads=2) as client:
        for _ in range(3):
            response = client.post("/verify", files=files)
            assert response.status_code == 200, response.text
            assert response.json()["verified"]


def test_detector_session_threads_follow_the_setting(make_settings: Callable[..., Settings]) -> None:
    engine = Engine.load(make_settings(threads=2))
    assert engine.detector.session.get_session_options().intra_op_num_threads == 1  # the default
    assert engine.components[0].session.get_session_options().intra_op_num_threads == 2
    engine = Engine.load(make_settings(threads=1, detector_threads=2))
    assert engine.detector.session.get_session_options().intra_op_num_threads == 2
    assert engine.components[0].session.get_session_options().intra_op_num_threads == 1


def test_trimmer_trims_on_its_own_thread_and_folds_requests() -> None:
    calls: list[int] = []
    running, release = threading.Event(), threading.Event()

    def trim() -> None:
        calls.append(threading.get_ident())
        running.set()
        release.wait(WAIT_S)

    trimmer = Trimmer(trim)
    trimmer.request()
    assert running.wait(WAIT_S)  # the caller did not wait for it
    for _ in range(5):  # asked again while a trim runs: one more trim after it, not five
        trimmer.request()
    running.clear()
    release.set()
    assert running.wait(WAIT_S)
    assert len(calls) == 2 and threading.get_ident() not in calls
