"""Name -> algorithm registry, with a pydantic model validating each algorithm's parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spikefed.fl.base import Algorithm
from spikefed.fl.fedavg import FedAvg
from spikefed.fl.fedprox import FedProx
from spikefed.fl.flsnn import FLSNN
from spikefed.fl.moon import Moon, MoonParams
from spikefed.fl.scaffold import Scaffold, ScaffoldParams
from spikefed.fl.snfl import SFedProxParams, SMoonParams, SnflParams, s_fedavg, s_fedprox, s_moon
from spikefed.fl.solo import Solo
from spikefed.snn.glm import LearningRule
from spikefed.strict_numbers import number_problems


class NoParams(BaseModel):
    """Algorithms without parameters accept no keys."""

    model_config = ConfigDict(extra="forbid")


class FedProxParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mu: float = Field(0.01, ge=0, description="weight of the proximal term mu/2 ||w - w_t||^2")


class FLSNNParams(BaseModel):
    """FL-SNN: exchange period and size, and the GLM network's local learning rule."""

    model_config = ConfigDict(extra="forbid")
    tau: int = Field(4, ge=1, description="global iterations (local updates) per round")
    comm_rate: float = Field(1.0, gt=0, le=1, description="fraction of feed-forward "
                             "coefficients uploaded per round (1 = full exchange)")
    k: int | None = Field(None, ge=1, description="feed-forward coefficients uploaded per "
                          "round, instead of comm_rate")
    lr: float = Field(0.01, ge=0, description="learning rate of the three-factor rule")
    delta_s: int = Field(5, ge=1, description="local steps per update (must divide model.T)")
    kl_weight: float = Field(1.0, ge=0, description="weight of the hidden-rate KL term")
    target_rate: float = Field(0.2, gt=0, lt=1, description="target hidden firing rate")
    baseline_decay: float = Field(0.9, ge=0, lt=1, description="learning-signal baseline decay")
    n_examples: int | None = Field(None, ge=1, description="length of each device's example "
                                   "stream before it repeats (default: its local set size)")


def flsnn(tau: int, comm_rate: float, k: int | None, lr: float, delta_s: int, kl_weight: float,
          target_rate: float, baseline_decay: float, n_examples: int | None) -> FLSNN:
    """FL-SNN from validated parameters; the GLM network comes from the model (model.name=glm)."""
    rule = LearningRule(lr=lr, delta_s=delta_s, kl_weight=kl_weight, target_rate=target_rate,
                        baseline_decay=baseline_decay)
    return FLSNN(None, rule, tau=tau, comm_rate=comm_rate, k=k, n_examples=n_examples)


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
register_algorithm("flsnn", flsnn, FLSNNParams,
                   "FL-SNN: GLM spiking networks, full or top-k partial exchange every tau "
                   "updates (model.name=glm)")
