"""ClientApp: one spikefed client per SuperNode (`--node-config 'partition-id=K ...'`)."""

from pathlib import Path

from spikefed.flower import make_client_app

app = make_client_app(app_dir=Path(__file__).parent)
