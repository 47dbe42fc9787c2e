"""Per-request options accepted both as form fields and as query parameters (the form field wins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Query

from service.deps import SettingsDep

_THRESHOLD = "Cosine similarity at or above which the faces are the same person (default: the model's)"
_SINGLE = "Several faces in a photo is a 422 multiple_faces instead of taking the main face"


@dataclass(frozen=True)
class FaceOptions:
    threshold: float | None
    require_single_face: bool


def face_options(
    settings: SettingsDep,
    threshold_form: Annotated[
        float | None, Form(alias="threshold", ge=-1.0, le=1.0, allow_inf_nan=False, description=_THRESHOLD)
    ] = None,
    single_form: Annotated[bool | None, Form(alias="require_single_face", description=_SINGLE)] = None,
    threshold_query: Annotated[
        float | None, Query(alias="threshold", ge=-1.0, le=1.0, allow_inf_nan=False, description=_THRESHOLD)
    ] = None,
    single_query: Annotated[bool | None, Query(alias="require_single_face", description=_SINGLE)] = None,
) -> FaceOptions:
    threshold = threshold_form if threshold_form is not None else threshold_query
    single = single_form if single_form is not None else single_query
    return FaceOptions(threshold, settings.require_single_face if single is None else single)


FaceOptionsDep = Annotated[FaceOptions, Depends(face_options)]
