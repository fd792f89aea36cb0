"""`spikefed reproduce snfl --scale gpu`: the plan, its cost estimate and a CPU smoke run of the
same code path (the GPU run itself needs a GPU session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import load_config, validate_config
from spikefed.experiment import round_lr
from spikefed.experiments.snfl import (
    METHODS,
    PAPER_SERVER_ACC,
    SCALES,
    describe_plan,
    paper_comparison,
    plan,
    reproduce,
    with_scale,
)
from spikefed.experiments.snfl.cost import estimate_cost, job_units, neuron_layers
from spikefed.report import read_metrics


@pytest.fixture(scope="module")
def gpu_jobs() -> list[dict]:
    return plan("table", SCALES["gpu"], Path("runs/snfl"), "/data")


def test_gpu_table_plan_is_table_1_on_cifar10(gpu_jobs: list[dict]) -> None:
    rows = [j["row"] for j in gpu_jobs]
    assert len(gpu_jobs) == 2 * 2 * len(METHODS)  # 2 settings x 2 seeds x 7 methods
    assert {r["setting"] for r in rows} == {"10 clients, IID", "10 clients, quantity Dir(0.5)"}
    assert {r["seed"] for r in rows} == {0, 1}
    assert {r["method"] for r in rows} == set(METHODS)
    for job in gpu_jobs:
        cfg = validate_config(job["cfg"], job["cfg"]["name"])
        assert cfg.device == "cuda" and cfg.data.dataset == "cifar10"
        assert (cfg.model.name, cfg.model.spiking, cfg.model.norm) == ("resnet20", False, "bn")
        assert cfg.model.kwargs == {"bias": True} and cfg.data.num_clients == 10
        assert cfg.data.augment == "crop_flip" and cfg.data.test_subset is None
        assert cfg.train.lr_schedule == "step" and cfg.train.lr_milestones == [4]
        rates = [round_lr(cfg, r) for r in range(1, cfg.train.rounds + 1)]
        assert rates == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01])
        if cfg.algorithm.name.startswith("s-"):
            assert cfg.algorithm.params["T"] == 32
            assert cfg.algorithm.params["calibration"] == "bias"  # the paper's BC
        scheme = cfg.data.partition.scheme
        assert scheme == ("iid" if "IID" in job["row"]["setting"] else "quantity")
    assert len({j["cfg"]["name"] for j in gpu_jobs}) == len(gpu_jobs)


def test_gpu_plan_is_estimated_to_fit_ten_minutes(gpu_jobs: list[dict]) -> None:
    described = describe_plan("gpu", ["table"], Path("runs/snfl"), "/data")
    cost = described["cost"]
    assert described["device"] == "cuda" and cost["estimate"] is True
    assert cost["workers"] == 4 and cost["jobs"] == len(gpu_jobs)
    assert 60 < cost["seconds"] <= 600
    # the spiking variants pay for client conversion and the T-step server evaluation
    by_name = {r["name"]: r for r in cost["per_job"]}
    assert by_name["table-s-fedavg-n10-iid-s0"]["convert"] > 0
    assert "convert" not in by_name["table-fedavg-n10-iid-s0"]
    assert "eval_server" not in by_name["table-solo-n10-iid-s0"]


def test_cost_model_scales_with_rounds_workers_and_T(gpu_jobs: list[dict]) -> None:
    job = next(j for j in gpu_jobs if j["cfg"]["algorithm"]["name"] == "s-fedavg")
    assert neuron_layers(job["cfg"]) == 19  # ResNet-20: stem + 9 blocks x 2 ReLUs
    base = job_units(job)
    assert base["train"] == pytest.approx(5 * 1 * 50_000)
    longer = {**job, "cfg": {**job["cfg"], "train": {**job["cfg"]["train"], "rounds": 10}}}
    assert job_units(longer)["convert"] == pytest.approx(2 * base["convert"])
    p = job["cfg"]["algorithm"]["params"]
    longer_T = {**job, "cfg": {**job["cfg"], "algorithm": {"name": "s-fedavg",
                                                          "params": {**p, "T": 64}}}}
    assert job_units(longer_T)["eval_server"] == pytest.approx(2 * base["eval_server"])
    one, four = estimate_cost([job], 1), estimate_cost([job], 4)
    assert one["seconds"] > four["seconds"] and four["images_per_s"] == 33_600
    with pytest.raises(ValueError, match="workers"):
        estimate_cost([job], 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_scale_without_cuda_is_a_clear_error_exit_2(tmp_path) -> None:
    with pytest.raises(ValueError, match="CUDA GPU"):
        reproduce("gpu", ["table"], tmp_path, data_root=str(tmp_path))
    result = CliRunner().invoke(app, ["reproduce", "snfl", "--scale", "gpu", "--experiments",
                                      "table", "--data-root", str(tmp_path), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "CUDA GPU" in result.output and "Traceback" not in result.output
    dry = CliRunner().invoke(app, ["reproduce", "snfl", "--scale", "gpu", "--experiments",
                                   "table", "--data-root", str(tmp_path), "--dry-run"])
    assert dry.exit_code == 0 and "28 runs" in dry.output and "estimate" in dry.output


def _row(setting: str, method: str, seed: int, acc: float) -> dict:
    return {"setting": setting, "method": method, "seed": seed, "server_acc": acc,
            "client_acc_mean": acc, "client_acc_std": 0.01}


def test_paper_comparison_sits_beside_table_1_and_judges_each_pair() -> None:
    s = "10 clients, IID"
    rows = [_row(s, "fedavg", 0, 0.80), _row(s, "fedavg", 1, 0.81),
            _row(s, "s-fedavg", 0, 0.85), _row(s, "s-fedavg", 1, 0.86),  # clearly higher
            _row(s, "fedprox", 0, 0.80), _row(s, "fedprox", 1, 0.82),
            _row(s, "s-fedprox", 0, 0.80), _row(s, "s-fedprox", 1, 0.83),  # within noise
            _row(s, "moon", 0, 0.85), _row(s, "moon", 1, 0.85),
            _row(s, "s-moon", 0, 0.70), _row(s, "s-moon", 1, 0.71)]  # lower
    text = paper_comparison(rows)
    assert "| fedavg | 80.5 ± 0.5 | 92.2 |" in text
    assert "| s-fedavg | 85.5 ± 0.5 | 95.3 |" in text
    assert "| s-fedavg vs fedavg | +5.0 | +3.1 | yes |" in text
    assert "| s-fedprox vs fedprox | +0.5 | +3.5 | within seed noise |" in text
    assert "| s-moon vs moon | -14.5 | +1.8 | no (lower) |" in text
    assert "Dir(0.5)" not in text  # no rows for that setting
    assert set(PAPER_SERVER_ACC["IID"]) == set(METHODS) - {"solo"}


def test_gpu_code_path_runs_on_cpu_at_tiny_scale(tmp_path) -> None:
    """The `gpu` scale's settings (seeds, augmentation, step schedule, paper table) on
    mnist-mini with LeNet-5, 3 clients of 12 samples and three of the methods, on the CPU."""
    tiny = with_scale("gpu", dataset="mnist-mini", model="lenet5", device="cpu", rounds=2,
                      T=4, calib_size=8, max_train_per_client=12, test_subset=40,
                      eval_batch_size=40, lr_milestones=(2,), table_clients=(3,),
                      table_betas=(), methods=("fedavg", "s-fedavg", "solo"))
    results = reproduce(tiny, ["table"], tmp_path, workers=1)
    rows = results["table"]
    assert len(rows) == 2 * 3 and {r["seed"] for r in rows} == {0, 1}
    assert all(r["server_acc"] is not None for r in rows if r["method"] != "solo")
    text = (tmp_path / "table" / "results.md").read_text()
    assert "± over seeds" in text and "ours vs SNFL" not in text  # not CIFAR-10: no paper row
    run_dir = tmp_path / "runs" / "table-s-fedavg-n3-iid-s1"
    cfg = load_config(run_dir / "config.yaml")
    assert (cfg.seed, cfg.data.augment, cfg.train.lr_milestones) == (1, "crop_flip", [2])
    lrs = [r["lr"] for r in read_metrics(run_dir / "metrics.jsonl")]
    assert lrs == pytest.approx([0.1, 0.01])
