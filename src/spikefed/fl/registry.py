"""Name -> algorithm registry, with a pydantic model validating each algorithm's parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spikefed.fl.base import Algorithm
from spikefed.fl.fedavg import FedAvg
from spikefed.fl.fedprox import FedProx
from spikefed.fl.moon import Moon, MoonParams
from spikefed.fl.scaffold import Scaffold, ScaffoldParams
from spikefed.fl.snfl import SFedProxParams, SMoonParams, SnflParams, s_fedavg, s_fedprox, s_moon
from spikefed.fl.solo import Solo
from spikefed.strict_numbers import number_problems


class NoParams(BaseModel):
    """Algorithms without parameters accept no keys."""

    model_config = ConfigDict(extra="forbid")


class FedProxParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mu: float = Field(0.01, ge=0, description="weight of the proximal term mu/2 ||w - w_t||^2")


@dataclass(frozen=True)
class AlgorithmSpec:
    """How to build one algorithm from validated parameters."""

    factory: Callable[..., Algorithm]
    params: type[BaseModel]
    description: str


ALGORITHMS: dict[str, AlgorithmSpec] = {}


def register_algorithm(name: str, factory: Callable[..., Algorithm], params: type[BaseModel],
                       description: str) -> None:
    """Make an algorithm available to configs and the CLI under `name`."""
    ALGORITHMS[name] = AlgorithmSpec(factory, params, description)


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate `params` for algorithm `name`; errors name the key and the choices."""
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm.name={name!r} is unknown; choose one of {sorted(ALGORITHMS)}")
    problems = number_problems(ALGORITHMS[name].params, params, "algorithm.params.")
    if problems:
        raise ValueError("; ".join(problems))
    try:
        return ALGORITHMS[name].params(**params).model_dump()
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = "algorithm.params." + ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                allowed = sorted(ALGORITHMS[name].params.model_fields) or "none"
                problems.append(f"unknown key '{key}' for {name}; valid keys: {allowed}")
            else:
                problems.append(f"{key}={e.get('input')!r}: {e['msg']}")
        raise ValueError("; ".join(problems)) from None


def build_algorithm(name: str, params: dict[str, Any] | None = None) -> Algorithm:
    """Instantiate a registered algorithm with validated parameters."""
    return ALGORITHMS[name].factory(**validate_params(name, params or {}))


register_algorithm("fedavg", FedAvg, NoParams, "FedAvg: sample-weighted model averaging")
register_algorithm("fedprox", FedProx, FedProxParams, "FedProx: FedAvg + proximal term (mu)")
register_algorithm("solo", Solo, NoParams, "SOLO: local training only, no communication")
register_algorithm("centralized", FedAvg, NoParams,
                   "centralised baseline: one client holding all training data")
register_algorithm("moon", Moon, MoonParams, "MOON: FedAvg + model-contrastive loss (mu, tau)")
register_algorithm("scaffold", Scaffold, ScaffoldParams,
                   "SCAFFOLD: drift correction with server/client control variates")
register_algorithm("s-fedavg", s_fedavg, SnflParams, "SNFL over FedAvg: ANN clients, SNN server")
register_algorithm("s-fedprox", s_fedprox, SFedProxParams, "SNFL over FedProx")
register_algorithm("s-moon", s_moon, SMoonParams, "SNFL over MOON")
