"""Per-request options accepted both as form fields and as query parameters (the form field wins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Query

from service.deps import EngineDep, SettingsDep
from service.thresholds import Threshold, resolve_threshold

_THRESHOLD = "Cosine similarity at or above which the faces are the same person (default: the model's)"
_FAR = (
    "Use the threshold the model publishes for this false-accept rate (see GET /info operating_points; "
    "e.g. 0.001); not together with threshold"
)
_SINGLE = "Several faces in a photo is a 422 multiple_faces instead of taking the main face (default: false)"


# FastAPI merges the body fields of all dependencies by parameter name: the names must be unique.
async def threshold_option(
    threshold_form: Annotated[
        float | None, Form(alias="threshold", ge=-1.0, le=1.0, allow_inf_nan=False, description=_THRESHOLD)
    ] = None,
    threshold_query: Annotated[
        float | None, Query(alias="threshold", ge=-1.0, le=1.0, allow_inf_nan=False, description=_THRESHOLD)
    ] = None,
) -> float | None:
    return threshold_form if threshold_form is not None else threshold_query


async def far_option(
    far_form: Annotated[float | None, Form(alias="far", gt=0.0, lt=1.0, allow_inf_nan=False, description=_FAR)] = None,
    far_query: Annotated[
        float | None, Query(alias="far", gt=0.0, lt=1.0, allow_inf_nan=False, description=_FAR)
    ] = None,
) -> float | None:
    return far_form if far_form is not None else far_query


async def threshold_choice(
    engine: EngineDep,
    threshold: Annotated[float | None, Depends(threshold_option)],
    far: Annotated[float | None, Depends(far_option)],
) -> Threshold:
    """The request's threshold, far or the default, resolved against the served model."""
    return resolve_threshold(engine.card, threshold=threshold, far=far)


async def single_face_option(
    settings: SettingsDep,
    single_form: Annotated[bool | None, Form(alias="require_single_face", description=_SINGLE)] = None,
    single_query: Annotated[bool | None, Query(alias="require_single_face", description=_SINGLE)] = None,
) -> bool:
    chosen = single_form if single_form is not None else single_query
    return settings.require_single_face if chosen is None else chosen


ThresholdDep = Annotated[Threshold, Depends(threshold_choice)]
SingleFaceDep = Annotated[bool, Depends(single_face_option)]
