"""Real photos at real sizes: reduced decoding, where the crop comes from, EXIF on large JPEGs, the pixel budget.

The large photos are built here from the committed LFW photos (pasted, enlarged, into a large canvas), so
their faces and the expected verdicts are known.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import DATA, DIFFERENT, SAME, encode, error_of, part, photo
from fastapi.testclient import TestClient
from PIL import Image

from service.alignment import align_antialiased
from service.budget import PixelBudget
from service.config import Settings
from service.cropping import MAX_REDUCED_SCALE, crop_scale, face_crops, from_reduced
from service.engine import Engine, Upload
from service.errors import MultipleFaces, Overloaded
from service.imaging import decode
from service.locating import COARSE_SIDE, coarse_faces, iou, locate
from service.manifest import load_manifest

FACE, SAME_FACE, OTHER_FACE = SAME[0][0], SAME[0][1], DIFFERENT[0][1]
LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def large_photo(name: str, canvas: tuple[int, int], face_scale: float, at: tuple[int, int]) -> Image.Image:
    """The committed photo ``name`` enlarged ``face_scale`` times and pasted at ``at`` into a textured canvas."""
    rng = np.random.default_rng(0)
    noise = rng.integers(90, 160, size=(canvas[1] // 16 + 1, canvas[0] // 16 + 1, 3), dtype=np.uint8)
    background = Image.fromarray(noise).resize(canvas, Image.Resampling.BILINEAR)
    face = Image.open(DATA / name).convert("RGB")
    size = round(face.width * face_scale)
    background.paste(face.resize((size, size), Image.Resampling.BICUBIC), at)
    return background


def jpeg(image: Image.Image, orientation: int | None = None) -> bytes:
    """JPEG bytes; with ``orientation``, stored so that applying that EXIF orientation gives ``image`` back."""
    if orientation is None:
        return encode(image, "JPEG", quality=92)
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image.transpose(undo[orientation]), "JPEG", quality=92, exif=exif.tobytes())


def verify(client: TestClient, data1: bytes, name2: str) -> dict[str, Any]:
    response = client.post("/verify", files={"image1": ("large.jpg", data1, "image/jpeg"), "image2": part(name2)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def engine(manifest_path: Any) -> Engine:
    return Engine.load(Settings(manifest=manifest_path, log_level="WARNING"))


@pytest.fixture(scope="module")
def baseline(client: TestClient) -> dict[str, Any]:
    """/verify on the committed 250x250 photos: what the large photos must reproduce."""
    files = {"image1": part(FACE), "image2": part(SAME_FACE)}
    return dict(client.post("/verify", files=files).json())


def test_large_photo_verifies_as_the_original(client: TestClient, engine: Engine, baseline: dict[str, Any]) -> None:
    big = large_photo(FACE, (6000, 4000), 4.0, (3100, 1200))  # 24 MP, the face 4x its LFW size
    data = jpeg(big)
    same, other = verify(client, data, SAME_FACE), verify(client, data, OTHER_FACE)
    assert same["verified"] and not other["verified"]
    assert abs(same["similarity"] - baseline["similarity"]) < 0.1
    # Coordinates are in the uploaded photo: the LFW face box moved and scaled like the paste.
    # (YuNet's box is a little looser on a large face.)
    box, expected = np.asarray(same["faces"][0]["box"]), np.asarray(baseline["faces"][0]["box"]) * 4.0
    expected[:2] += [3100, 1200]
    assert np.allclose(box[:2] + box[2:] / 2, expected[:2] + expected[2:] / 2, atol=0.05 * expected[2])
    assert np.allclose(box[2:], expected[2:], rtol=0.1)
    # The served embedding is the one the whole photo decoded at full resolution gives.
    (served,) = engine.analyse([Upload("image", data)], require_single_face=False)
    full = decode(data, **LIMITS).image
    old = engine.embed([full], [served.face])[0]
    assert float(served.embedding @ old) > 0.98


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_large_jpeg(client: TestClient, orientation: int) -> None:
    big = large_photo(FACE, (4003, 3001), 3.0, (2500, 900))  # sides not a multiple of 8: partial edge pixels
    upright = verify(client, jpeg(big), SAME_FACE)
    rotated = verify(client, jpeg(big, orientation), SAME_FACE)
    assert rotated["verified"]
    # The 64x64 crop moves with a landmark jitter of a reduced pixel: 0.03 measured (a wrong rotation: > 0.3).
    assert abs(rotated["similarity"] - upright["similarity"]) < 0.05
    # The same face, in the same place of the displayed photo, within a JPEG re-encoding's jitter: the photo is
    # decoded at 1/4 and the rotated one's reduced pixel grid is shifted, so 1.5 reduced pixels = 6 here (a
    # wrong orientation would be off by hundreds).
    assert np.allclose(rotated["faces"][0]["landmarks"], upright["faces"][0]["landmarks"], atol=6)


def test_reduced_decoding_is_the_cheapest_that_keeps_the_detector_size(engine: Engine) -> None:
    big = large_photo(FACE, (6000, 4000), 4.0, (3100, 1200))
    decoded = decode(jpeg(big), min_side=engine.detector.config.max_side, **LIMITS)
    assert decoded.factor == 8 and decoded.image.size == (750, 500) and decoded.full_size == (6000, 4000)
    assert decoded.full is None  # JPEG: the full-resolution pixels were never made
    png = decode(encode(big.resize((1600, 1000)), "PNG"), min_side=640, **LIMITS)
    assert png.factor == 2 and png.image.size == (800, 500) and png.full is not None
    small = decode(photo(FACE), min_side=640, **LIMITS)
    assert small.factor == 1 and small.image.size == (250, 250)


def test_rule_reduced_or_full_follows_the_template_scale(engine: Engine) -> None:
    spec = engine.components[0].spec.input
    template = np.asarray(spec.template)
    decoded = decode(jpeg(large_photo(FACE, (4000, 3000), 2.0, (100, 100))), min_side=640, **LIMITS)
    assert decoded.factor == 4
    # Landmarks spread as the template is on the crop: one source pixel per crop pixel, the limit of the rule.
    assert crop_scale(template, spec) == pytest.approx(1.0)
    assert from_reduced(decoded, template * 1.02 + 300, spec)
    assert not from_reduced(decoded, template * 0.98 + 300, spec)
    assert MAX_REDUCED_SCALE == 1.0


def old_way_crop(data: bytes, landmarks: np.ndarray, engine: Engine) -> np.ndarray:
    """The crop as the service made it before reduced decoding: the whole photo decoded at full resolution."""
    spec = engine.components[0].spec.input
    full = decode(data, **LIMITS).image
    return align_antialiased(full, landmarks, np.asarray(spec.template), (spec.width, spec.height))


def test_face_too_small_at_draft_scale_is_cropped_from_full_resolution(client: TestClient, engine: Engine) -> None:
    # 35 MP; the 250 px LFW photo enlarged 2.5x: at 1/8 scale its face is smaller than the 64 px crop needs.
    data = jpeg(large_photo(FACE, (7000, 5000), 2.5, (4000, 2500)))
    decoded = decode(data, min_side=engine.detector.config.max_side, **LIMITS)
    assert decoded.factor == 8
    faces = engine.detector.detect(decoded.image)
    assert faces, "the face must still be found at the detector's size"
    spec = engine.components[0].spec.input
    assert not from_reduced(decoded, faces[0].landmarks, spec)
    (served,) = face_crops(decoded, faces[0].landmarks, [spec])
    expected = old_way_crop(data, decoded.to_full(faces[0].landmarks), engine)
    served_diff = np.abs(served.astype(int) - expected.astype(int))
    assert served_diff.max() <= 1 and served_diff.mean() < 0.1  # today's full-resolution crop
    (upsampled,) = face_crops(decoded, faces[0].landmarks, [spec], reduced=True)
    assert np.abs(upsampled.astype(int) - expected.astype(int)).mean() > 0.5  # what the reduced image gives
    result = verify(client, data, SAME_FACE)
    assert result["verified"]


def test_large_face_in_reduced_image_matches_the_full_resolution_crop(engine: Engine) -> None:
    data = jpeg(large_photo(FACE, (5000, 4000), 8.0, (1200, 900)))  # face large even at 1/4 scale
    decoded = decode(data, min_side=640, **LIMITS)
    faces = engine.detector.detect(decoded.image)
    spec = engine.components[0].spec.input
    assert decoded.factor == 4 and from_reduced(decoded, faces[0].landmarks, spec)
    (served,) = face_crops(decoded, faces[0].landmarks, [spec])
    expected = old_way_crop(data, decoded.to_full(faces[0].landmarks), engine)
    assert np.abs(served.astype(int) - expected.astype(int)).mean() < 3


def test_budget_unit() -> None:
    budget = PixelBudget(100, wait_seconds=0.05)
    with budget.reserve(60):
        with pytest.raises(Overloaded) as refused:
            with budget.reserve(60):
                pass
        assert refused.value.retry_after >= 1
        with budget.reserve(40):
            assert budget.in_use == 100
    with budget.reserve(10_000):  # more than the budget: cut to it, so it still runs alone
        assert budget.in_use == 100
    assert budget.in_use == 0
    # A waiting reservation gets the pixels as soon as another thread gives them back.
    waiter = PixelBudget(100, wait_seconds=5.0)
    held = waiter.reserve(100)
    held.__enter__()
    threading.Timer(0.1, lambda: held.__exit__(None, None, None)).start()
    with waiter.reserve(100):
        assert waiter.in_use == 100


def test_budget_turns_excess_large_uploads_into_503(make_client: Callable[..., Any]) -> None:
    # PNG: no reduced decoding, so each upload holds its 6 MP at full resolution; the budget fits one, and a
    # request that finds it taken is refused at once (no wait: the outcome does not hang on how fast others are).
    big = encode(large_photo(FACE, (3000, 2000), 2.0, (1500, 500)), "PNG", compress_level=1)
    statuses: Counter[int] = Counter()
    bodies: list[Any] = []
    lock = threading.Lock()
    with make_client(pixel_budget=8_000_000, pixel_budget_wait=0.0) as limited:

        def send() -> None:
            files = {"image1": ("big.png", big, "image/png"), "image2": part(SAME_FACE)}
            response = limited.post("/verify", files=files)
            with lock:
                statuses[response.status_code] += 1
                bodies.append(response)

        workers = [threading.Thread(target=send) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 1 and statuses[503] >= 1, statuses
    for response in bodies:
        if response.status_code == 503:
            error_of(response, 503, "overloaded")
            assert int(response.headers["Retry-After"]) >= 1
        else:
            assert response.json()["verified"]


def test_overloaded_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    described = schema["paths"]["/verify"]["post"]["responses"]["503"]
    assert "overloaded" in described["description"] and "Retry-After" in described.get("headers", {})


def test_docs_need_no_network(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"]
        html = response.text
        # Every URL the page loads is on this server: no scheme, no protocol-relative host.
        urls = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""", html)
        loaded = [a or b for a, b in urls]
        assert loaded and all(u.startswith("/") and not u.startswith("//") for u in loaded), loaded
        assert not re.search(r"https?://", html), html
        for url in loaded:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert '"validatorUrl": null' in client.get("/docs").text  # no badge request to validator.swagger.io


def test_manifest_template_gives_the_rule(manifest_path: Any) -> None:
    """The rule reads each component's own template and crop size: a component with a 2x larger crop needs 2x
    the face size in the reduced image."""
    manifest = load_manifest(manifest_path)
    spec = manifest.models[manifest.default_model].components[0].input
    template = np.asarray(spec.template)
    assert crop_scale(template / 2, spec) == pytest.approx(2.0)


def test_refined_main_face_is_the_one_a_full_size_pass_finds(engine: Engine) -> None:
    decoded = decode(jpeg(large_photo(FACE, (4000, 3000), 3.0, (2300, 700))), min_side=640, **LIMITS)
    image = decoded.image
    assert max(image.size) > 2 * COARSE_SIDE  # searched at COARSE_SIDE, then refined
    located = locate(engine.detector, image, require_single_face=False)
    (full,) = engine.detector.detect(image)  # one pass at 640 px, as before the quick pass existed
    assert located.method == "refined" and located.count == 1
    assert iou(located.face.box, full.box) > 0.7
    eyes = float(np.linalg.norm(full.landmarks[1] - full.landmarks[0]))
    # YuNet's landmarks depend on the face's size in its input (here ~64 px at 640, ~120 px in the close-up):
    # 12 % of the eye distance measured on this face; a wrong face or a mapping error would be far more.
    assert np.abs(located.face.landmarks - full.landmarks).max() < 0.2 * eyes
    (coarse,) = coarse_faces(engine.detector, image)  # the close-up moved the landmarks, not the face
    assert iou(coarse.box, located.face.box) > 0.5 and not np.allclose(coarse.landmarks, located.face.landmarks)


def test_small_face_in_huge_photo_is_found(client: TestClient, engine: Engine) -> None:
    # 35 MP, the LFW photo at 1.5x: its face is ~20 px at 1/8 scale, ~7 px at the quick pass's ~290 px.
    data = jpeg(large_photo(FACE, (7000, 5000), 1.5, (4800, 3200)))
    (served,) = engine.analyse([Upload("image", data)], require_single_face=False)
    assert served.faces_detected == 1
    x, y, width, height = served.face.box
    assert 4800 < x + width / 2 < 4800 + 375 and 3200 < y + height / 2 < 3200 + 375
    assert verify(client, data, SAME_FACE)["verified"]


def test_two_faces_counted_and_refused_with_require_single_face(client: TestClient, engine: Engine) -> None:
    big = large_photo(FACE, (4000, 3000), 3.0, (2300, 700))
    big.paste(Image.open(DATA / OTHER_FACE).convert("RGB").resize((1000, 1000)), (200, 1600))
    (served,) = engine.analyse([Upload("image", jpeg(big))], require_single_face=False)
    assert served.faces_detected == 2 and served.face.box[0] > 2000  # the larger, nearer-the-centre face
    # A bystander too small for the quick pass (~20 px there) is not counted by it, but require_single_face
    # searches at the full detector size and refuses the photo.
    big = large_photo(FACE, (4000, 3000), 3.0, (2300, 700))
    big.paste(Image.open(DATA / OTHER_FACE).convert("RGB").resize((500, 500)), (300, 1800))
    data = jpeg(big)
    (served,) = engine.analyse([Upload("image", data)], require_single_face=False)
    assert served.faces_detected == 1 and served.face.box[0] > 2000
    with pytest.raises(MultipleFaces):
        engine.analyse([Upload("image", data)], require_single_face=True)
    files = {"image1": ("two.jpg", data, "image/jpeg"), "image2": part(SAME_FACE)}
    error_of(client.post("/verify", files=files, data={"require_single_face": "true"}), 422, "multiple_faces")
