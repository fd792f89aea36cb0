"""Run spikefed experiments on Flower (optional extra: `pip install 'spikefed[flower]'`).

`make_server_app` / `make_client_app` wrap any spikefed algorithm as a Flower ServerApp
(with `SpikefedStrategy`) and ClientApp; `run_local` drives both in one process. The core
and the in-process engine never import this package.
"""

try:
    import flwr  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("spikefed.flower needs Flower: pip install 'spikefed[flower]'") from exc

from spikefed.flower.client import make_client_app
from spikefed.flower.local import LocalGrid, run_local
from spikefed.flower.server import SERVER_MODEL_FILE, make_server_app, run_federation
from spikefed.flower.strategy import SpikefedStrategy

__all__ = ["SERVER_MODEL_FILE", "LocalGrid", "SpikefedStrategy", "make_client_app",
           "make_server_app", "run_federation", "run_local"]
