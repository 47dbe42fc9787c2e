"""Request and response bodies of the HTTP API (pydantic), and the error responses each route documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.detection import Face
from service.engine import FaceEmbedding, ModelCard
from service.manifest import LfwResult, OperatingPoints, Provenance

_MODEL_REF = (
    "The model of embedding{0}, as /embed returned it. When given, it must be the served model (and the same as "
    "the other one's), else 422 model_mismatch; when omitted, embedding{0} is taken to be the served model's."
)

# An embedding sent back for comparison: generous bound (models here are 128-1024-d), but not unbounded.
_MAX_EMBEDDING_VALUES = 8192


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable machine-readable code: invalid_image, unsupported_media_type, image_too_large, "
        "no_face, multiple_faces, invalid_request, model_mismatch, unauthorized, not_ready, overloaded, not_found, "
        "method_not_allowed, gallery_model_mismatch, no_enrolled_faces, gallery_unavailable, internal_error"
    )
    message: str = Field(description="Human-readable explanation")
    field: str | None = Field(default=None, description="The request field the error is about, e.g. image2")
    request_id: str | None = Field(default=None, description="Also in the X-Request-ID response header")
    details: list[FieldError] | None = Field(default=None, description="Every invalid field (invalid_request)")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ModelRef(BaseModel):
    """A model's identity: embeddings compare only with embeddings of the same name, version and sha256."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(max_length=200)
    version: str = Field(max_length=200)
    sha256: str = Field(max_length=64)

    @classmethod
    def of(cls, card: ModelCard) -> ModelRef:
        return cls(name=card.name, version=card.version, sha256=card.sha256)


class FaceOut(BaseModel):
    box: list[float] = Field(min_length=4, max_length=4, description="x, y, width, height in image pixels")
    score: float = Field(description="Detector confidence in [0, 1]")
    landmarks: list[list[float]] = Field(
        description="5 points (x, y): eye, eye, nose tip, mouth corner, mouth corner (image left to right)"
    )
    faces_detected: int = Field(
        description="Faces found on the whole photo; the main one is reported. On a photo of 432 px or more "
        "the search runs on a ~288 px copy, so faces under ~20 px there are not counted; with require_single_face "
        "it runs at the detector's full 640 px."
    )

    @classmethod
    def of(cls, face: Face, faces_detected: int) -> FaceOut:
        return cls(
            box=[round(float(v), 2) for v in face.box],
            score=round(face.score, 4),
            landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
            faces_detected=faces_detected,
        )


class VerifyResponse(BaseModel):
    verified: bool = Field(description="similarity >= threshold")
    similarity: float = Field(description="Cosine similarity of the two faces' embeddings, in [-1, 1]")
    threshold: float
    far: float | None = Field(default=None, description="The published false-accept rate of that threshold (far=)")
    faces: list[FaceOut] = Field(description="The main face of image1 and of image2")
    model: ModelRef
    took_ms: float


class EmbedResult(FaceOut):
    embedding: list[float] = Field(description="L2-normalised embedding of the main face")
    model: ModelRef = Field(
        description="The model that made it: store it with the embedding and send it back "
        "to POST /verify/embeddings as model1/model2"
    )

    @classmethod
    def of_embedding(cls, result: FaceEmbedding, card: ModelCard) -> EmbedResult:
        face = FaceOut.of(result.face, result.faces_detected)
        return cls(embedding=result.embedding.tolist(), model=ModelRef.of(card), **face.model_dump())


class EmbedResponse(BaseModel):
    model: ModelRef
    dim: int
    results: list[EmbedResult] = Field(description="One per image part, in request order")
    took_ms: float


class EmbeddingsVerifyRequest(BaseModel):
    # strict: JSON numbers only; no "0.5" strings or true/false quietly turned into numbers.
    model_config = ConfigDict(extra="forbid", strict=True)

    embedding1: list[float] = Field(min_length=1, max_length=_MAX_EMBEDDING_VALUES)
    embedding2: list[float] = Field(min_length=1, max_length=_MAX_EMBEDDING_VALUES)
    model1: ModelRef | None = Field(default=None, description=_MODEL_REF.format(1))
    model2: ModelRef | None = Field(default=None, description=_MODEL_REF.format(2))
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0, allow_inf_nan=False)
    far: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="A published false-accept rate (GET /info); not together with threshold",
    )


class EmbeddingsVerifyResponse(BaseModel):
    verified: bool
    similarity: float
    threshold: float
    far: float | None = Field(default=None, description="The published false-accept rate of that threshold (far=)")
    model: ModelRef
    took_ms: float


class InputOut(BaseModel):
    width: int
    height: int
    colour_order: str
    flip_average: bool
    shifts: list[tuple[float, float]] = Field(
        default_factory=list, description="Test-time crops: template offsets in crop pixels (empty: one crop)"
    )


class InfoResponse(BaseModel):
    """The model card."""

    name: str
    version: str
    sha256: str
    dim: int
    input: list[InputOut] = Field(description="Crop size and colour order of each model component")
    threshold: float = Field(description="Default threshold (FACE_THRESHOLD or the manifest's calibrated one)")
    threshold_calibration: str = Field(description="How the manifest's threshold was chosen")
    manifest_threshold: float
    operating_points: OperatingPoints | None = Field(
        description="Thresholds for published false-accept rates (far=), where they were calibrated and what they "
        "measured on held-out identities and on LFW"
    )
    lfw: LfwResult | None = Field(description="LFW 10-fold verification results from the manifest")
    teachers: list[str]
    description: str
    provenance: Provenance | None
    components: list[dict[str, str]] = Field(description="file and sha256 of each ONNX graph")
    detector: dict[str, Any]
    limits: dict[str, int]
    formats: list[str]


class Status(BaseModel):
    status: str
    model: str | None = None


_DESCRIPTIONS = {
    400: "invalid_image: empty, truncated or corrupt image",
    401: "unauthorized: X-API-Key missing or wrong (only when the server has API keys)",
    413: "image_too_large: over the byte limit, or over the pixel limit read from the header",
    415: "unsupported_media_type: not JPEG, PNG, WebP or BMP (e.g. text, PDF), or the wrong request body type",
    422: "invalid_request (missing or invalid fields, malformed body, far not published), no_face, multiple_faces, "
    "model_mismatch (embeddings of another model)",
    503: "not_ready: the models are not loaded yet; overloaded: too many decoded pixels in flight "
    "(FACE_PIXEL_BUDGET) for FACE_PIXEL_BUDGET_WAIT seconds, retry after the Retry-After header's seconds",
    500: "internal_error: a bug; the body has the request id, never a traceback",
}


_HEADERS: dict[int, dict[str, Any]] = {
    503: {
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying (sent with overloaded)",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries with the ``{"error": ...}`` body for each status."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status], **_HEADERS.get(status, {})}
        for status in statuses
    }
