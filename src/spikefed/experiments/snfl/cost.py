"""A cost model for SNFL reproduction jobs: how long a plan should take on one GPU.

This is an ESTIMATE from throughputs measured in issue 9 on one H200 (torch 2.11) for a
ResNet-20 ANN on CIFAR-10, not a measurement of these jobs: training ran at ~12,200 images/s
in a plain PyTorch loop at batch 128 (launch-bound) and ~33,600 images/s at batch 512 (the
GPU kept busy). Concurrent jobs are assumed to add up to at most the batch-512 figure. All
work is counted in *training-image equivalents*; the relative costs of an inference image
and of one SNN time step are assumptions stated below, to be replaced by measurements.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from spikefed.data import dataset_info

#: issue 9 (one H200): ResNet-20 ANN training images per second, batch 128, one process
TRAIN_IMAGES_PER_S = 12_200.0
#: issue 9: the same at batch 512 -- taken as the ceiling that concurrent jobs share
SATURATED_IMAGES_PER_S = 33_600.0
#: assumption: an inference (forward-only) image costs a third of a training image
FORWARD_COST = 1.0 / 3.0
#: assumption: one time step of a converted SNN on one image costs half a training image
#: (forward only, plus the IF neuron's elementwise kernels)
SNN_STEP_COST = 0.5
#: MOON runs two extra forward passes (global and previous model) per training batch
MOON_COST = 1.0 + 2.0 * FORWARD_COST
#: SNN passes per layer in client-side calibration (threshold search alone is one ANN pass)
CALIBRATION_PASSES = {"none": 0, "bias": 1, "light": 2, "advanced": 3}
#: training / test set sizes of the data sets the plans use
SPLIT_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000),
               "mnist-mini": (10_000, 2_000), "mnist": (60_000, 10_000),
               "fashion-mnist": (60_000, 10_000)}


def neuron_layers(cfg: dict[str, Any]) -> int:
    """Number of ReLU layers (IF neurons after conversion) of a job's model."""
    from spikefed.models import build_model

    m, info = cfg["model"], dataset_info(cfg["data"]["dataset"])
    model = build_model(m["name"], spiking=False, in_shape=info.in_shape,
                        num_classes=info.num_classes, norm=m["norm"], **m["kwargs"])
    return sum(isinstance(mod, nn.ReLU) for mod in model.modules())


def job_units(job: dict[str, Any]) -> dict[str, float]:
    """Training-image equivalents of one job: training, client conversions, evaluation."""
    cfg = job["cfg"]
    data, train, alg = cfg["data"], cfg["train"], cfg["algorithm"]
    if data["dataset"] not in SPLIT_SIZES:
        raise ValueError(f"no split sizes for data set {data['dataset']!r}; "
                         f"known: {sorted(SPLIT_SIZES)}")
    n_train, n_test = SPLIT_SIZES[data["dataset"]]
    if data.get("test_subset"):
        n_test = min(n_test, int(data["test_subset"]))
    clients = data["num_clients"]
    if job.get("max_train"):
        n_train = min(n_train, clients * int(job["max_train"]))
    share = float(train["fraction"])
    rounds, method = int(train["rounds"]), alg["name"]
    evals = -(-rounds // int(train["eval_every"]))
    per_image = MOON_COST if method.endswith("moon") else 1.0
    units = {"train": rounds * train["local_epochs"] * share * n_train * per_image}
    spiking_server = method.startswith("s-")
    if spiking_server:
        p = alg["params"]
        depth = (neuron_layers(cfg) + 1) / 2  # a layer's calibration runs the SNN up to it
        units["convert"] = (rounds * share * clients * p["calib_size"] * p["T"] * depth
                            * SNN_STEP_COST * CALIBRATION_PASSES[p["calibration"]])
        units["eval_server"] = evals * n_test * p["T"] * SNN_STEP_COST
    elif method != "solo":
        units["eval_server"] = evals * n_test * FORWARD_COST
    if train["eval_clients"]:
        units["eval_clients"] = evals * share * clients * n_test * FORWARD_COST
    return units


def throughput(workers: int) -> float:
    """Training images per second that `workers` concurrent jobs share (the assumption)."""
    return min(workers * TRAIN_IMAGES_PER_S, SATURATED_IMAGES_PER_S)


def estimate_cost(jobs: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Estimated seconds of `jobs` run `workers` at a time on one GPU of issue 9's kind."""
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    per_job = [{"name": j["cfg"]["name"], **job_units(j)} for j in jobs]
    total = sum(sum(v for k, v in row.items() if k != "name") for row in per_job)
    return {"jobs": len(jobs), "workers": workers, "images_per_s": throughput(workers),
            "train_image_units": total, "seconds": total / throughput(workers),
            "per_job": per_job, "estimate": True}
