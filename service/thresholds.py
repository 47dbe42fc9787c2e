"""Which threshold a request uses: its own ``threshold``, a published operating point (``far``) or the default.

One function for every route that decides "same person or not" (/verify, /verify/embeddings, /identify), so
that they all accept the same options and refuse the same mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.engine import ModelCard
from service.errors import InvalidRequest


@dataclass(frozen=True)
class Threshold:
    """The cosine threshold a decision uses, and the published false-accept rate it belongs to (if chosen so)."""

    value: float
    far: float | None = None


def resolve_threshold(card: ModelCard, *, threshold: float | None = None, far: float | None = None) -> Threshold:
    """``threshold`` as given; else the threshold the model's manifest publishes for ``far``; else the default
    (``FACE_THRESHOLD`` or the manifest's calibrated default, ``card.threshold``).

    Raises:
        InvalidRequest: both given, or ``far`` is not one of the rates the model publishes.
    """
    if threshold is not None and far is not None:
        raise InvalidRequest("give threshold or far, not both", field="far")
    if threshold is not None:
        return Threshold(threshold)
    if far is None:
        return Threshold(card.threshold)
    points = card.spec.operating_points
    if points is None:
        raise InvalidRequest(f"model {card.name} publishes no operating points: give a threshold", field="far")
    chosen = points.threshold_at(far)
    if chosen is None:
        allowed = ", ".join(f"{rate:g}" for rate in points.fars)
        raise InvalidRequest(
            f"far={far:g} is not a published operating point of {card.name}; use one of: {allowed}", field="far"
        )
    return Threshold(chosen, far)
