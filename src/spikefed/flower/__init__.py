"""Run spikefed experiments on Flower (optional extra: `pip install 'spikefed[flower]'`).

`make_server_app` / `make_client_app` wrap any spikefed algorithm as a Flower ServerApp
(with `SpikefedStrategy`, or `AsyncSpikefedStrategy` for an `asynchronous:` section) and
ClientApp; `run_local` drives both in one process;
`spikefed.flower.template` writes a ready-to-run Flower app. The core and the in-process
engine never import this package; names are loaded on first use, so `spikefed.flower.template`
works without Flower installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_client_app": "spikefed.flower.client",
    "make_server_app": "spikefed.flower.server",
    "run_federation": "spikefed.flower.server",
    "SERVER_MODEL_FILE": "spikefed.flower.server",
    "SpikefedStrategy": "spikefed.flower.strategy",
    "AsyncSpikefedStrategy": "spikefed.flower.asynchronous",
    "LocalGrid": "spikefed.flower.local",
    "run_local": "spikefed.flower.local",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spikefed.flower' has no attribute {name!r}")
    try:
        module = importlib.import_module(_EXPORTS[name])
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "flwr":
            raise ImportError("spikefed.flower needs Flower: pip install 'spikefed[flower]'"
                              ) from exc
        raise
    return getattr(module, name)
