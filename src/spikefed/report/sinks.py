"""Metric sinks beyond ``metrics.jsonl``: TensorBoard event files and MLflow runs.

Both are written from the run's records when the run finishes (or is stopped), so a resumed
run replaces what it wrote before instead of logging rounds twice. Both libraries are
optional; asking for a sink whose library is missing is a clear error before training starts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from spikefed.config import ExperimentConfig, MlflowConfig, ReportConfig
from spikefed.report.html import write_report
from spikefed.report.runs import flatten_config

# record key -> scalar name shared by TensorBoard tags and MLflow metric keys
SCALARS = {
    "server_acc": "accuracy/server", "client_acc_mean": "accuracy/client_mean",
    "client_acc_std": "accuracy/client_std", "server_loss": "loss/server",
    "client_loss_mean": "loss/client_mean", "train_loss_mean": "loss/train_mean",
    "bytes_up": "bytes/up", "bytes_down": "bytes/down",
    "spikes_per_sample": "activity/spikes_per_sample",
    "synops_per_sample": "activity/synops_per_sample",
    "energy_per_sample_pj": "energy/per_sample_pj", "uploads": "clients/uploads",
    "stragglers": "clients/stragglers", "wall_s": "time/wall_s",
}
TENSORBOARD_DIR = "tensorboard"
MLFLOW_RUN_ID_FILE = "mlflow_run_id"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of one round under their sink names (rejections counted)."""
    out = {name: float(record[key]) for key, name in SCALARS.items()
           if isinstance(record.get(key), (int, float)) and not isinstance(record[key], bool)}
    out["clients/rejected"] = float(len(record.get("rejected") or []))
    return out


def require_sinks(cfg: ReportConfig) -> None:
    """Raise a clear error now if a configured sink's library is not installed."""
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("report.tensorboard=true needs the `tensorboard` package: "
                         "pip install tensorboard (or set report.tensorboard=false)")
    if cfg.mlflow is not None and importlib.util.find_spec("mlflow") is None:
        raise ValueError("report.mlflow is set but MLflow is not installed: "
                         "pip install 'spikefed[mlflow]' (mlflow-skinny), or remove report.mlflow")


def _images(run_dir: Path) -> dict[str, Path]:
    return {name: run_dir / f"{name}.png" for name in ("curves", "partition")
            if (run_dir / f"{name}.png").is_file()}


def write_tensorboard(run_dir: Path, records: list[dict[str, Any]], config_yaml: str) -> Path:
    """Event files in ``run_dir/tensorboard``: scalars per round, the config as text and the
    run's figures as images. Replaces earlier event files of this run."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    target = run_dir / TENSORBOARD_DIR
    shutil.rmtree(target, ignore_errors=True)
    with SummaryWriter(log_dir=str(target)) as writer:
        for record in records:
            for name, value in scalars(record).items():
                writer.add_scalar(name, value, global_step=record["round"])
        writer.add_text("config", "```yaml\n" + config_yaml + "\n```")
        step = records[-1]["round"] if records else 0
        for name, path in _images(run_dir).items():
            writer.add_image(name, plt.imread(path)[..., :3], global_step=step,
                             dataformats="HWC")
    return target


def log_mlflow(run_dir: Path, cfg: ExperimentConfig, records: list[dict[str, Any]],
               summary: dict[str, Any], mlflow_cfg: MlflowConfig) -> str:
    """One MLflow run (params = flattened config, per-round metrics with step = round, final
    summary metrics, run files as artifacts); returns its run id. Re-logging (a resumed run)
    deletes the earlier MLflow run of this run directory first."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = mlflow_cfg.tracking_uri or (run_dir / "mlruns").resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        # MLflow 3 keeps the file store only behind this opt-in (no database needed).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(mlflow_cfg.experiment)
    exp_id = (experiment.experiment_id if experiment is not None
              else client.create_experiment(mlflow_cfg.experiment))
    id_file = run_dir / MLFLOW_RUN_ID_FILE
    if id_file.is_file():
        try:
            client.delete_run(id_file.read_text().strip())
        except MlflowException:  # already deleted by hand, or in another store
            pass
    run = client.create_run(exp_id, run_name=cfg.name,
                            tags={"spikefed.run_dir": str(run_dir.resolve())})
    run_id = run.info.run_id
    params = [Param(k, str(v)[:6000]) for k, v in
              flatten_config(cfg.model_dump(mode="json")).items()]
    metrics = [Metric(name, value, 0, record["round"]) for record in records
               for name, value in scalars(record).items()]
    metrics += [Metric(f"final/{k}", float(v), 0, records[-1]["round"] if records else 0)
                for k, v in summary.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    client.log_batch(run_id, tags=[RunTag("spikefed.rounds", str(len(records)))])
    for name in ("config.yaml", "summary.json", "report.html", "curves.png", "partition.png"):
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    client.set_terminated(run_id)
    id_file.write_text(run_id)
    return run_id


def publish_run(run_dir: str | Path, cfg: ExperimentConfig) -> None:
    """Everything a finished (or stopped) run writes besides metrics: report.html and the
    configured sinks."""
    run_dir = Path(run_dir)
    write_report(run_dir)
    if not (cfg.report.tensorboard or cfg.report.mlflow):
        return
    from spikefed.report.metrics import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    if cfg.report.tensorboard:
        write_tensorboard(run_dir, records, yaml.safe_dump(cfg.model_dump(mode="json"),
                                                           sort_keys=False))
    if cfg.report.mlflow is not None:
        summary = json.loads((run_dir / "summary.json").read_text())
        log_mlflow(run_dir, cfg, records, summary, cfg.report.mlflow)
