"""ServerApp: runs the spikefed experiment of `experiment.yaml` with `SpikefedStrategy`."""

from pathlib import Path

from spikefed.flower import make_server_app

app = make_server_app(app_dir=Path(__file__).parent)
