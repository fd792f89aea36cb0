"""A pydantic base for config models whose numbers must be real numbers.

YAML and `--set` turn `true`/`false` into booleans and `.inf`/`.nan` into floats; pydantic would
take `rounds: true` as 1 and `lr: .inf` as a learning rate. Models deriving from
`RealNumbers` reject both, with errors that name the key.
"""

from __future__ import annotations

import math
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


def _is_number_type(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_number_type(arg) for arg in get_args(annotation))
    return False


class RealNumbers(BaseModel):
    """Base: no inf/nan in float fields, no booleans where an int or float is expected."""

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _is_number_type(field.annotation):
            raise PydanticCustomError("bool_for_number",
                                      "expected a number, got a boolean; write a number")
        return value


def number_problems(model: type[BaseModel], raw: dict[str, Any], prefix: str) -> list[str]:
    """Booleans or non-finite floats given for the number fields of `model` (for models that do
    not derive from `RealNumbers`), each as `prefix.key=value: why`."""
    problems = []
    for key, value in raw.items():
        field = model.model_fields.get(key)
        if field is None or not _is_number_type(field.annotation):
            continue
        if isinstance(value, bool):
            problems.append(f"{prefix}{key}={value!r}: expected a number, got a boolean")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{prefix}{key}={value!r}: must be a finite number")
    return problems
