"""The Flower `ServerApp`: build the experiment, run `SpikefedStrategy`, write the run dir."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from spikefed.config import dump_config
from spikefed.experiment import Federation, build_federation
from spikefed.flower.appconfig import experiment_config
from spikefed.flower.asynchronous import AsyncSpikefedStrategy
from spikefed.flower.strategy import SpikefedStrategy
from spikefed.flower.support import require_flower_support
from spikefed.report.sinks import publish_run, require_sinks
from spikefed.rounds.files import atomic_write_bytes
from spikefed.rounds.summary import summarize

SERVER_MODEL_FILE = "server_model.pt"


def run_federation(grid: Grid, federation: Federation, out_dir: str | Path | None = None,
                   round_timeout_s: float = 3600.0, node_wait_s: float = 300.0
                   ) -> SpikefedStrategy:
    """Run `federation` for `train.rounds` rounds over `grid` (or, with an `asynchronous:`
    section, for `asynchronous.updates` client updates); return the finished strategy.

    With `out_dir`, writes `config.yaml`, `metrics.jsonl` (one line a round, as the
    in-process engine), `summary.json` and the final server model (`server_model.pt`).
    """
    require_flower_support(federation.cfg)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        require_sinks(federation.cfg.report)  # a missing sink library fails before training
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(federation.cfg))
        (out / "metrics.jsonl").unlink(missing_ok=True)
    # asynchronous: section -> FedAsync/FedBuff on the wall clock (flower/asynchronous.py)
    kind = SpikefedStrategy if federation.cfg.asynchronous is None else AsyncSpikefedStrategy
    strategy = kind(federation, out, node_wait_s=node_wait_s)
    strategy.start(grid, strategy.initial_arrays(), num_rounds=federation.cfg.train.rounds,
                   timeout=round_timeout_s)
    if out is not None:
        summary = summarize(strategy.records, federation.cfg.energy.target_acc)
        summary["run_dir"] = str(out)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        buffer = io.BytesIO()
        torch.save(strategy.server_model(), buffer)
        atomic_write_bytes(out / SERVER_MODEL_FILE, buffer.getvalue())
        publish_run(out, federation.cfg)  # report.html and the configured metric sinks
    return strategy


def make_server_app(app_dir: str | Path | None = None, federation: Federation | None = None,
                    out_dir: str | Path | None = None,
                    on_done: Callable[[SpikefedStrategy], None] | None = None) -> ServerApp:
    """Build the ServerApp.

    The experiment is `federation`, or the run config's `config` + `set` (resolved against
    `app_dir`). Outputs go to `out_dir`, else the run config's `out-dir` (relative paths are
    relative to the working directory of the process running the ServerApp), else nowhere.
    Run config `round-timeout` (s) bounds a round (asynchronous runs: each reply);
    `node-wait` (s) bounds waiting for nodes.
    `on_done` receives the finished strategy (final server state, per-round records).
    """
    app = ServerApp()
    base = Path(app_dir) if app_dir is not None else None

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        rc = context.run_config
        fed = federation or build_federation(experiment_config(rc, base))
        out = out_dir if out_dir is not None else (rc.get("out-dir") or None)
        strategy = run_federation(grid, fed, out, float(rc.get("round-timeout", 3600.0)),
                                  float(rc.get("node-wait", 300.0)))
        if on_done is not None:
            on_done(strategy)

    return app
