"""Model registry and the ``build_model`` factory."""

from __future__ import annotations

from typing import Any

from torch import nn

from spikefed.models.base import ZooModel

MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str):
    """Class decorator adding a model class to ``MODELS`` under ``name`` (a :class:`ZooModel`,
    or any module built with ``build_model``'s keywords, like the GLM network ``glm``)."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS:
            raise ValueError(f"model name={name!r} is already registered")
        MODELS[name] = cls
        return cls

    return deco


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def zoo_models() -> list[str]:
    """Names of the zoo's ANN/SNN twins (:class:`ZooModel` subclasses), sorted."""
    return sorted(n for n, cls in MODELS.items() if issubclass(cls, ZooModel))


def build_model(
    name: str,
    *,
    spiking: bool,
    in_shape: tuple[int, ...],
    num_classes: int,
    T: int = 8,
    neuron: dict[str, Any] | None = None,
    encoder: str = "direct",
    norm: str = "bn",
    order: str = "step",
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` as ANN (``spiking=False``) or SNN; ``kwargs`` are model options
    (e.g. ``hidden=(512,)`` for ``mlp``, ``widths`` for ``vgg-small``)."""
    if name not in MODELS:
        raise ValueError(f"model name={name!r} is unknown; choose one of {available_models()}")
    try:
        return MODELS[name](
            spiking=spiking,
            in_shape=tuple(in_shape),
            num_classes=num_classes,
            T=T,
            neuron=neuron,
            encoder=encoder,
            norm=norm,
            order=order,
            **kwargs,
        )
    except TypeError as err:
        raise ValueError(f"bad option for model {name!r}: {err}") from None
