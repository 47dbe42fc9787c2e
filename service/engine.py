"""The verification pipeline: decode -> detect -> main face -> align per component -> run -> normalise.

Routes stay thin: they hand uploads to :meth:`Engine.analyse` and compare the embeddings it returns.
Everything blocking (decoding, ONNX Runtime) happens here and is called from worker threads, never on the
event loop. The engine is immutable after :meth:`Engine.load` and safe to share between threads
(``InferenceSession.run`` is thread-safe).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from service.budget import PixelBudget
from service.config import Settings
from service.cropping import face_crops, full_pixels_needed
from service.detection import Face, FaceDetector
from service.errors import ServiceError
from service.fanout import Fanout
from service.imaging import DecodedImage, PendingImage, open_image
from service.locating import Located, locate
from service.manifest import EmbeddingModel, ManifestError, load_manifest
from service.memory import Trimmer
from service.preprocessing import to_tensor
from service.sessions import LoadedComponent, SessionPool, load_component, load_detector, session_options
from service.similarity import l2_normalise

log = logging.getLogger(__name__)


class Observer(Protocol):
    """Receives pipeline measurements (implemented by :class:`service.metrics.Metrics`)."""

    def stage(self, name: str, seconds: float) -> None: ...

    def faces(self, count: int) -> None: ...


@dataclass(frozen=True)
class Upload:
    """One uploaded file: ``field`` names it in errors (``image1``, ``image[2]``)."""

    field: str
    data: bytes
    content_type: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class FaceEmbedding:
    """The main face of one photo and its unit-norm embedding ``(dim,)``."""

    embedding: NDArray[np.float32]
    face: Face
    faces_detected: int


_Analysed = tuple[Face, int, list[NDArray[np.uint8]]]
"""One photo's main face (full-resolution coordinates), faces found, and one crop per component."""


@dataclass(frozen=True)
class ModelCard:
    """What the service is serving, as reported by /info, /verify and /metrics."""

    name: str
    version: str
    sha256: str
    dim: int
    threshold: float
    spec: EmbeddingModel


def model_sha256(spec: EmbeddingModel) -> str:
    """The model's identity: its file's sha256 (:attr:`Component.identity`: for a graph served with its mirror
    image or shifted crops, a hash of it and of how), or for several components the sha256 of theirs."""
    if len(spec.components) == 1:
        return spec.components[0].identity
    return hashlib.sha256("\n".join(c.identity for c in spec.components).encode()).hexdigest()


class Engine:
    """Detector and embedding model, loaded once; see the module docstring."""

    def __init__(
        self,
        detector: FaceDetector,
        components: Sequence[LoadedComponent],
        card: ModelCard,
        settings: Settings,
        observer: Observer | None = None,
    ) -> None:
        self.detector = detector
        self.components = tuple(components)
        self.crop_specs = [component.spec.crop_specs() for component in self.components]
        """Per component, the input of each crop it embeds per face (more than one with test-time shifts)."""
        self.card = card
        self.max_upload_bytes = settings.max_upload_bytes
        self.max_pixels = settings.max_pixels
        self.observer = observer
        # Trim after every ~quarter budget given back: frees the arenas' tails without a trim per request.
        self.budget = PixelBudget(
            settings.pixel_budget,
            settings.pixel_budget_wait,
            on_idle=Trimmer().request,
            idle_after=settings.pixel_budget // 4,
        )
        self.fanout = Fanout(settings.photo_threads)

    @classmethod
    def load(cls, settings: Settings, observer: Observer | None = None) -> Engine:
        """Read the manifest, check every file's sha256, create and warm up the sessions.

        Raises:
            ManifestError: with a message naming what is missing or does not match.
        """
        started = time.perf_counter()
        manifest = load_manifest(settings.manifest)
        name = settings.model or manifest.default_model
        if name not in manifest.models:
            raise ManifestError(
                f"model {name!r} (FACE_MODEL) is not in {settings.manifest}; it has {sorted(manifest.models)}"
            )
        spec = manifest.models[name]
        pool = SessionPool(settings.manifest, session_options(settings.threads, settings.ort_spinning))
        detector_pool = SessionPool(
            settings.manifest, session_options(settings.detector_threads, settings.ort_spinning)
        )
        detector = load_detector(detector_pool, manifest.detector)
        components = [load_component(pool, component) for component in spec.components]
        threshold = settings.threshold if settings.threshold is not None else spec.threshold
        card = ModelCard(name, spec.version, model_sha256(spec), spec.dim, threshold, spec)
        log.info(
            "models loaded and warm",
            extra={
                "model": name,
                "version": spec.version,
                "sha256": card.sha256,
                "threads": settings.threads,
                "load_seconds": round(time.perf_counter() - started, 3),
            },
        )
        return cls(detector, components, card, settings, observer)

    def analyse(self, uploads: Sequence[Upload], *, require_single_face: bool) -> list[FaceEmbedding]:
        """Main face and embedding of each upload; the crops of all uploads run as one batch per component.

        Each photo is decoded at the size the detector needs and dropped as soon as its crops are taken, and
        every decode holds its pixels in the budget (:mod:`service.budget`) while it lives. While this is the
        only request in the engine, and the budget can hold its photos at once, they are decoded and searched
        side by side on the spare threads (:mod:`service.fanout`); otherwise one after the other, so a request
        under load holds one photo at a time.

        Raises:
            ServiceError: the first upload that cannot be used, with ``field`` naming it.
        """

        def one(item: tuple[Upload, PendingImage | None]) -> _Analysed:
            with _blame(item[0]):
                return self._analyse_one(item[0], require_single_face, item[1])

        with self.fanout.request() as alone:
            opened = self._open_all(uploads) if alone and len(uploads) > 1 else None
            pendings: list[PendingImage | None] = list(opened) if opened else [None] * len(uploads)
            spread = opened is not None and self._fit_together(opened)
            done = self.fanout.map(one, list(zip(uploads, pendings, strict=True)), spread=spread)
            crops = [np.concatenate([crop[i] for _, _, crop in done]) for i in range(len(self.components))]
            embeddings = self._embed_crops(crops)
        return [FaceEmbedding(e, face, count) for e, (face, count, _) in zip(embeddings, done, strict=True)]

    def _open_all(self, uploads: Sequence[Upload]) -> list[PendingImage] | None:
        """Every upload's header, or ``None`` if one is bad: the photos then go one after the other, which
        reports the first failing photo in order, as always."""
        try:
            return [self._open(upload) for upload in uploads]
        except ServiceError:
            return None

    def _fit_together(self, opened: Sequence[PendingImage]) -> bool:
        """Whether the budget holds all these photos decoded at once, each at its most (its reduced image, or
        the full-resolution one a small face may need): then side by side they are never refused where one
        after the other they would not be."""
        most = [max(self._reservation(p), p.upright_size[0] * p.upright_size[1] * (p.factor > 1)) for p in opened]
        return sum(most) <= self.budget.capacity

    def _reservation(self, pending: PendingImage) -> int:
        """Pixels one photo holds while it is decoded and searched (its decode and the detector's input)."""
        return pending.pixels + self.detector.input_pixels(pending.reduced_size)

    def _analyse_one(self, upload: Upload, require_single_face: bool, pending: PendingImage | None = None) -> _Analysed:
        """Decode (reduced), detect, pick the main face and crop it: (face in full-resolution coordinates,
        faces found, its crops per component)."""
        pending = pending or self._open(upload)
        specs = [spec for specs in self.crop_specs for spec in specs]
        with self.budget.reserve(self._reservation(pending)):
            decoded = self._decode(pending)
            located = self._locate(decoded.image, require_single_face)
            face = located.face
            full_pixels = full_pixels_needed(decoded, face.landmarks, specs)
            if not full_pixels:
                return _to_full(face, decoded), located.count, self._crops(decoded, face)
        with self.budget.reserve(full_pixels):  # a face too small in the reduced image: its full-resolution region
            return _to_full(face, decoded), located.count, self._crops(decoded, face)

    def embed(self, images: Sequence[Image.Image], faces: Sequence[Face]) -> NDArray[np.float32]:
        """Unit embeddings ``(N, dim)`` of given faces (landmarks in the images' coordinates): per component
        L2-normalised, concatenated, normalised."""
        per_image = [
            self._crops(DecodedImage(image, "RGB", image.size), face) for image, face in zip(images, faces, strict=True)
        ]
        return self._embed_crops([np.concatenate(batch) for batch in zip(*per_image, strict=True)])

    def _open(self, upload: Upload) -> PendingImage:
        with self._timed("decode"):
            return open_image(
                upload.data,
                max_bytes=self.max_upload_bytes,
                max_pixels=self.max_pixels,
                declared_type=upload.content_type,
                min_side=self.detector.config.max_side,
            )

    def _decode(self, pending: PendingImage) -> DecodedImage:
        with self._timed("decode"):
            return pending.decode()

    def _locate(self, image: Image.Image, require_single_face: bool) -> Located:
        """The main face in the coordinates of ``image`` (the reduced photo), and the faces found
        (:mod:`service.locating`: a quick pass and a close-up on large photos)."""
        with self._timed("detect"):
            located = locate(self.detector, image, require_single_face=require_single_face)
        if self.observer is not None:
            self.observer.faces(located.count)
        return located

    def _crops(self, decoded: DecodedImage, face: Face) -> list[NDArray[np.uint8]]:
        """Per component, its crops ``(K, H, W, 3)`` of the face (its own template and crop size; K > 1 with
        test-time shifts), from the reduced image when the face is large enough there, else from the
        full-resolution pixels of its region (:mod:`service.cropping`)."""
        with self._timed("align"):
            flat = face_crops(decoded, face.landmarks, [spec for specs in self.crop_specs for spec in specs])
        grouped, start = [], 0
        for specs in self.crop_specs:
            grouped.append(np.stack(flat[start : start + len(specs)]))
            start += len(specs)
        return grouped

    def _embed_crops(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """One ``(N * K, H, W, 3)`` batch per component (each face's K crops in a row) -> ``(N, dim)`` unit
        embeddings."""
        with self._timed("embed"):
            parts = [self._run(component, batch) for component, batch in zip(self.components, crops, strict=True)]
            return l2_normalise(np.concatenate(parts, axis=1))

    @staticmethod
    def _run(component: LoadedComponent, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        spec, count = component.spec, len(crops)
        if spec.flip_average:  # the crops and their mirror images in one batch; their outputs are added
            crops = np.concatenate([crops, crops[:, :, ::-1]])
        output = component.run(to_tensor(crops, spec.input))
        if spec.flip_average:
            output = output[:count] + output[count:]
        per_face = spec.crops_per_face  # a face's crops are consecutive: their outputs are added as well
        return l2_normalise(output.reshape(count // per_face, per_face, -1).sum(axis=1))

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.observer is not None:
                self.observer.stage(stage, time.perf_counter() - started)


def _to_full(face: Face, decoded: DecodedImage) -> Face:
    """``face`` found in the reduced image, in the coordinates of the full-resolution photo."""
    if decoded.factor == 1:
        return face
    corner = decoded.to_full(face.box[:2])
    box = np.concatenate([corner, face.box[2:] * decoded.factor]).astype(np.float32)
    return Face(box=box, score=face.score, landmarks=decoded.to_full(face.landmarks))


@contextmanager
def _blame(upload: Upload) -> Iterator[None]:
    """Prefix an upload's errors with the field (and file name) it came from."""
    try:
        yield
    except ServiceError as exc:
        label = upload.field + (f" ({upload.filename!r})" if upload.filename else "")
        blamed = type(exc)(f"{label}: {exc.message}", field=upload.field)
        blamed.__dict__.update({k: v for k, v in vars(exc).items() if k not in ("message", "field")})
        raise blamed from exc
