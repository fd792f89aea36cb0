"""Model zoo: ANN and SNN classifiers with matching parameter names, and a registry."""

from spikefed.models import conv, glm, lenet_dlg, mlp, resnet  # noqa: F401  (register the models)
from spikefed.models.base import ZooModel, activation_modules
from spikefed.models.registry import (
    MODELS,
    available_models,
    build_model,
    register_model,
    zoo_models,
)

__all__ = [
    "MODELS",
    "ZooModel",
    "activation_modules",
    "available_models",
    "build_model",
    "register_model",
    "zoo_models",
]
