"""TensorBoard and MLflow sinks, read back with each library's own reader."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from spikefed.config import load_config
from spikefed.report.sinks import log_mlflow, require_sinks, write_tensorboard
from spikefed.sim import Simulation

TINY = ["train.rounds=2", "data.num_clients=3", "model.T=2", "data.test_subset=100",
        "train.batch_size=64"]


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{module} is missing in CI; `make dev` installs the dev extra")
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    _need("tensorboard")
    _need("mlflow")
    out = tmp_path_factory.mktemp("sinks") / "tiny"
    cfg = load_config(None, TINY + ["report.tensorboard=true",
                                    "report.mlflow={experiment: sinktest}"])
    Simulation(cfg, out).run()
    return out


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_events_hold_scalars_config_and_figures(run_dir) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    server = acc.Scalars("accuracy/server")
    records = _records(run_dir)
    assert [e.step for e in server] == [1, 2]
    assert [e.value for e in server] == pytest.approx([r["server_acc"] for r in records])
    assert [e.value for e in acc.Scalars("bytes/up")] == [r["bytes_up"] for r in records]
    assert {"curves", "partition"} <= set(acc.Tags()["images"])
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "num_clients: 3" in text


def test_tensorboard_rewrite_does_not_duplicate_rounds(run_dir) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_tensorboard(run_dir, _records(run_dir), "name: again")
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("accuracy/server")] == [1, 2]


def test_mlflow_run_holds_params_metrics_and_artifacts(run_dir) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient((run_dir / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("sinktest")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["train.rounds"] == "2" and run.data.params["model.T"] == "2"
    history = client.get_metric_history(run.info.run_id, "accuracy/server")
    records = _records(run_dir)
    assert [(m.step, m.value) for m in history] == [(r["round"], r["server_acc"])
                                                     for r in records]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.data.metrics["final/final_server_acc"] == pytest.approx(summary["final_server_acc"])
    names = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "summary.json", "report.html", "curves.png"} <= names
    # logging again (a resumed run) replaces the earlier MLflow run instead of adding one
    cfg = load_config(run_dir / "config.yaml")
    new_id = log_mlflow(run_dir, cfg, records, summary, cfg.report.mlflow)
    active = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in active] == [new_id]


def test_missing_sink_library_is_a_clear_error(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    cfg = load_config(None, ["report.mlflow={experiment: x}"])
    with pytest.raises(ValueError, match=r"spikefed\[mlflow\]"):
        require_sinks(cfg.report)
