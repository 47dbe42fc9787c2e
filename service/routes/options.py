"""Per-request options accepted both as form fields and as query parameters (the form field wins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Query

from service.deps import SettingsDep

_THRESHOLD = "Cosine similarity at or above which the faces are the same person (default: the model's)"
_SINGLE = "Several faces in a photo is a 422 multiple_faces instead of taking the main face (default: false)"


# FastAPI merges the body fields of all dependencies by parameter name: the names must be unique.
def threshold_option(
    threshold_form: Annotated[
        float | None, Form(alias="threshold", ge=-1.0, le=1.0, allow_inf_nan=False, description=_THRESHOLD)
    ] = None,
    threshold_query: Annotated[
        float | None, Query(alias="threshold", ge=-1.0, le=1.0, allow_inf_nan=False, description=_THRESHOLD)
    ] = None,
) -> float | None:
    return threshold_form if threshold_form is not None else threshold_query


def single_face_option(
    settings: SettingsDep,
    single_form: Annotated[bool | None, Form(alias="require_single_face", description=_SINGLE)] = None,
    single_query: Annotated[bool | None, Query(alias="require_single_face", description=_SINGLE)] = None,
) -> bool:
    chosen = single_form if single_form is not None else single_query
    return settings.require_single_face if chosen is None else chosen


ThresholdDep = Annotated[float | None, Depends(threshold_option)]
SingleFaceDep = Annotated[bool, Depends(single_face_option)]
