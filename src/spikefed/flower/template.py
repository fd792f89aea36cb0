"""The Flower app template (`examples/flower-app`, `spikefed flower-app DIR`).

A Flower app is a folder with a `pyproject.toml` naming its ServerApp and ClientApp; this one
runs the spikefed experiment in `spikefed_app/experiment.yaml`. Needs no Flower to write.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "spikefed_app"
CONFIG_FILE = f"{PACKAGE}/experiment.yaml"

PYPROJECT = f"""\
# A Flower app that runs a spikefed experiment (see docs/deploy.md).
# Run it with `flwr run . <connection>`; every SuperLink/SuperNode needs `spikefed[flower]`
# installed (start the SuperLink with --disable-runtime-dependency-installation offline).
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "spikefed-flower-app"
version = "0.1.0"
description = "A spikefed experiment as a Flower app (ServerApp + ClientApp)"
license = "Apache-2.0"
dependencies = ["spikefed[flower]"]

[tool.hatch.build.targets.wheel]
packages = ["{PACKAGE}"]

[tool.flwr.app]
publisher = "spikefed"

[tool.flwr.app.components]
serverapp = "{PACKAGE}.server_app:app"
clientapp = "{PACKAGE}.client_app:app"

[tool.flwr.app.config]
# spikefed experiment config, relative to the {PACKAGE} package
config = "experiment.yaml"
# extra overrides, ';'-separated key=value pairs (as `spikefed run --set`)
set = ""
# run directory written by the ServerApp (absolute, or relative to its working directory)
out-dir = "runs/flower-app"
# seconds to wait for replies in one round, and for all SuperNodes to connect
round-timeout = 3600.0
node-wait = 300.0
"""

INIT = '"""A spikefed experiment packaged as a Flower app."""\n'

SERVER_APP = '''\
"""ServerApp: runs the spikefed experiment of `experiment.yaml` with `SpikefedStrategy`."""

from pathlib import Path

from spikefed.flower import make_server_app

app = make_server_app(app_dir=Path(__file__).parent)
'''

CLIENT_APP = '''\
"""ClientApp: one spikefed client per SuperNode (`--node-config 'partition-id=K ...'`)."""

from pathlib import Path

from spikefed.flower import make_client_app

app = make_client_app(app_dir=Path(__file__).parent)
'''

EXPERIMENT = """\
# The spikefed experiment this app runs: one SuperNode per client (data.num_clients).
name: flower-app
seed: 0
data:
  dataset: mnist-mini
  num_clients: 4
  test_subset: 500
  partition: {scheme: iid}
model:
  name: mlp
  spiking: true
  T: 4
  kwargs: {hidden: [64]}
algorithm: {name: fedavg}
train:
  rounds: 3
  batch_size: 32
  lr: 0.05
  eval_clients: false
"""


def template_files(experiment_yaml: str | None = None) -> dict[str, str]:
    """Relative path -> text of every file of the app (`experiment_yaml` replaces the
    default experiment)."""
    return {
        "pyproject.toml": PYPROJECT,
        f"{PACKAGE}/__init__.py": INIT,
        f"{PACKAGE}/server_app.py": SERVER_APP,
        f"{PACKAGE}/client_app.py": CLIENT_APP,
        CONFIG_FILE: experiment_yaml or EXPERIMENT,
    }


def write_app(dest: str | Path, experiment_yaml: str | None = None,
              overwrite: bool = False) -> list[Path]:
    """Write the app into `dest`; existing files are an error unless `overwrite`."""
    dest = Path(dest)
    files = template_files(experiment_yaml)
    clashes = [p for p in files if (dest / p).exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{dest} already holds {', '.join(clashes)}; choose an empty "
                              "folder or pass --force")
    written = []
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
