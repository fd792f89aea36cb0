"""The SNFL reproduction's settings: the experiments, the methods and the scales (CPU smoke,
the paper's setting, one GPU)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

EXPERIMENTS = ("table", "stragglers", "clients", "T", "bias", "backdoor")
METHODS = ("fedavg", "s-fedavg", "fedprox", "s-fedprox", "moon", "s-moon", "solo")


@dataclass(frozen=True)
class Scale:
    """Everything that differs between the CPU smoke scale and the paper's setting."""

    dataset: str
    model: str
    T: int
    rounds: int
    local_epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    calib_size: int
    max_train_per_client: int | None
    test_subset: int | None
    device: str
    table_clients: tuple[int, ...]
    table_betas: tuple[float, ...]
    straggler_clients: int
    straggler_fractions: tuple[float, ...]
    client_counts: tuple[int, ...]
    T_values: tuple[int, ...]
    backdoor_clients: int = 10
    backdoor_attackers: int = 2
    backdoor_rounds: int = 4
    #: Scaled model replacement boost of the second backdoor run (the first is data poisoning
    #: only); None: clients / attackers (Bagdasaryan et al.'s n/eta with eta = 1, shared by the
    #: attackers); 1: no boosted run.
    backdoor_boost: float | None = None
    #: seeds of the accuracy table (mean ± std over them when there are several)
    seeds: tuple[int, ...] = (0,)
    #: data.augment of every run (None: the config default, `auto`)
    augment: str | None = None
    #: rounds at which the learning rate is multiplied by 0.1 (empty: constant rate)
    lr_milestones: tuple[int, ...] = ()
    #: partition of the non-IID table rows: label skew `dirichlet` or the paper's `quantity`
    #: skew (client i gets a Dir(beta) share q_i of the data, SNFL Sec. 5.2)
    non_iid: str = "dirichlet"
    #: evaluate every client's ANN on the test set (the paper's client-accuracy rows)
    eval_clients: bool = True
    eval_batch_size: int = 500
    #: methods of the accuracy table (its columns)
    methods: tuple[str, ...] = METHODS
    extra: dict[str, Any] = field(default_factory=dict)


SCALES: dict[str, Scale] = {
    # LeNet-5 with BN on the bundled MNIST subset; under 2 min on 16 cores with --workers 10.
    "small": Scale(dataset="mnist-mini", model="lenet5", T=16, rounds=3, local_epochs=1,
                   lr=0.05, batch_size=32, weight_decay=0.0, calib_size=32,
                   max_train_per_client=300, test_subset=500, device="cpu",
                   table_clients=(5, 10), table_betas=(0.5, 1.0), straggler_clients=10,
                   straggler_fractions=(0.2, 0.5, 1.0), client_counts=(5, 10, 20),
                   T_values=(8, 16, 32), backdoor_rounds=4),
    # The paper: ResNet-20, CIFAR-10 (local files), T = 256, 100 rounds x 5 local epochs.
    "full": Scale(dataset="cifar10", model="resnet20", T=256, rounds=100, local_epochs=5,
                  lr=0.1, batch_size=64, weight_decay=1e-5, calib_size=128,
                  max_train_per_client=None, test_subset=None, device="auto",
                  table_clients=(5, 10, 15), table_betas=(0.5, 1.0, 2.0), straggler_clients=60,
                  straggler_fractions=(0.1, 0.2, 0.5, 0.7, 1.0), client_counts=(5, 10, 15, 60),
                  T_values=(64, 128, 192, 256, 320), backdoor_rounds=20),
    # Table 1's CIFAR-10 rows cut to fit one H100/H200 in about 10 minutes (an estimate, see
    # `estimate_cost`): 10 clients, IID and the paper's quantity skew Dir(0.5); 5 rounds x 1
    # local epoch (paper: 100 x 5) with x0.1 at round 4 (paper: at 61 and 96 of 100); server
    # SNN T = 32 (paper: 256); 64 calibration images per client; crop+flip augmentation;
    # batch 128 (paper: not stated); two seeds; table jobs 4 at a time (`GPU_WORKERS`).
    "gpu": Scale(dataset="cifar10", model="resnet20", T=32, rounds=5, local_epochs=1,
                 lr=0.1, batch_size=128, weight_decay=1e-5, calib_size=64,
                 max_train_per_client=None, test_subset=None, device="cuda",
                 table_clients=(10,), table_betas=(0.5,), straggler_clients=10,
                 straggler_fractions=(0.2, 0.5, 1.0), client_counts=(10,), T_values=(32,),
                 backdoor_rounds=5, seeds=(0, 1), augment="crop_flip", lr_milestones=(4,),
                 non_iid="quantity", eval_clients=True, eval_batch_size=1000),
}

#: jobs run concurrently on the one GPU by default at the `gpu` scale (ResNet-20 at batch 128
#: is launch-bound, so a few processes share the GPU better than one)
GPU_WORKERS = 4


def with_scale(name: str, **changes: Any) -> Scale:
    """A copy of scale ``name`` with fields changed (tests use tiny scales)."""
    return replace(SCALES[name], **changes)


def resolve_scale(scale: str | Scale, experiments: list[str], boost: float | None
                  ) -> tuple[str, Scale]:
    """(name, Scale) of ``scale`` (a name in SCALES, or a Scale: 'custom') with ``boost``
    applied; checks the experiment names."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"--scale={scale!r} is unknown; choose one of {sorted(SCALES)}")
        scale_name, scale = scale, SCALES[scale]
    else:
        scale_name = "custom"
    if boost is not None:
        scale = replace(scale, backdoor_boost=boost)
    unknown = sorted(set(experiments) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"--experiments {unknown} unknown; choose from {list(EXPERIMENTS)}")
    return scale_name, scale


def default_workers(scale: Scale) -> int:
    """Concurrent jobs by default: `GPU_WORKERS` on a GPU scale, else 2 processes."""
    return GPU_WORKERS if scale.device == "cuda" else 2
