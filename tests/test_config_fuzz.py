"""Config fuzzing: any config dict validates or raises a readable `ConfigError`, never an
exception from deep inside; a valid config survives the round trip through `config.yaml`."""

from __future__ import annotations

import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from spikefed.config import ConfigError, ExperimentConfig, dump_config, load_config, validate_config

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 100),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-1.0, 2.0), st.text(max_size=12),
    st.sampled_from(["iid", "dirichlet", "fedprox", "fedavg", "solo", "mlp", "cpu", "rate",
                     "subtract", "atan", "bn", "sgd", "adam", "mnist-mini", "nope"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def _model_class(annotation: typing.Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation like `X | None`, if any."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def sections(model: type[BaseModel]) -> st.SearchStrategy[dict]:
    """Dicts mixing the model's real keys (with arbitrary or nested values) and unknown keys."""
    known = {}
    for name, field in model.model_fields.items():
        nested = _model_class(field.annotation)
        known[name] = st.one_of(values, sections(nested)) if nested else values
    entries = st.one_of(*(st.tuples(st.just(k), v) for k, v in known.items()),
                        st.tuples(st.text(max_size=8), values))
    return st.lists(entries, max_size=6).map(dict)


def _check(raw: object) -> ExperimentConfig | None:
    try:
        return validate_config(raw, "fuzz")  # type: ignore[arg-type]
    except ConfigError as err:
        text = str(err)
        assert text.startswith("invalid configuration (fuzz)"), text
        assert "\n  - " in text or ": " in text, text
        return None


@SETTINGS
@given(sections(ExperimentConfig))
def test_any_config_dict_validates_or_raises_config_error(raw: dict) -> None:
    cfg = _check(raw)
    if cfg is not None:  # a valid config must reload from its own config.yaml unchanged
        assert validate_config(yaml.safe_load(dump_config(cfg)), "round trip") == cfg


@SETTINGS
@given(values)
def test_any_top_level_value_is_handled(raw: object) -> None:
    if not isinstance(raw, dict):
        with pytest.raises(ConfigError):
            validate_config(raw, "fuzz")  # type: ignore[arg-type]
    else:
        _check(raw)


@SETTINGS
@given(st.text(max_size=60))
def test_any_yaml_file_loads_or_raises_config_error(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["train.rounds", "seed", "model.kwargs.hidden",
                                           "data", "x.y"]), st.text(max_size=10)), max_size=3))
def test_any_set_override_loads_or_raises_config_error(pairs: list[tuple[str, str]]) -> None:
    try:
        load_config(None, [f"{k}={v}" for k, v in pairs])
    except ConfigError as err:
        assert str(err)
