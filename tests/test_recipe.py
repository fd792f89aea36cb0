"""The training recipe: augmentation, learning-rate schedules, autocast and channels-last."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from spikefed.config import ConfigError, load_config
from spikefed.data.augment import augment_generator, batch_augmenter, crop_flip, resolve_augment
from spikefed.experiment import build_federation
from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.local import local_train
from spikefed.fl.schedule import scheduled_lr
from spikefed.sim import Simulation
from spikefed.sim.vectorized import vectorize_blockers

TINY = ["data.num_clients=2", "data.test_subset=200", "train.rounds=2", "train.batch_size=32",
        "model.name=lenet5", "model.spiking=false", "data.partition.scheme=iid",
        "train.eval_clients=false"]


def _reference_crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                         pad: int) -> torch.Tensor:
    """One image at a time, the obvious way."""
    h, w = x.shape[-2:]
    out = []
    for i in range(len(x)):
        padded = torch.nn.functional.pad(x[i], (pad, pad, pad, pad))
        crop = padded[..., offsets[0, i]:offsets[0, i] + h, offsets[1, i]:offsets[1, i] + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_crop_flip_matches_a_per_image_reference() -> None:
    x = torch.randn(16, 3, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(3), padding=4)
    g = torch.Generator().manual_seed(3)  # replay the draws crop_flip makes
    offsets = torch.randint(0, 9, (2, 16), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    assert torch.equal(out, _reference_crop_flip(x, offsets, flips, 4))
    assert 0 < int(flips.sum()) < 16 and not torch.equal(out, x)


def test_crop_flip_keeps_extra_leading_dims_and_zero_padding_is_identity_up_to_flip() -> None:
    x = torch.randn(6, 2, 3, 5, 5)  # e.g. [N, T, C, H, W]
    out = crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    assert out.shape == x.shape
    for i in range(6):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    with pytest.raises(ValueError, match="data.augment"):
        crop_flip(torch.randn(4, 10), torch.Generator())


def test_augmentation_is_seeded_by_seed_round_and_client() -> None:
    x = torch.randn(32, 3, 32, 32)
    same = [batch_augmenter("crop_flip", 0, 1, 2)(x) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    for other in ((1, 1, 2), (0, 2, 2), (0, 1, 3)):
        assert not torch.equal(batch_augmenter("crop_flip", *other)(x), same[0])
    assert batch_augmenter("none", 0, 1, 2) is None
    a, b = augment_generator(0, 1, 2), augment_generator(0, 1, 2)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))


def test_auto_means_crop_flip_for_cifar_only() -> None:
    assert resolve_augment("auto", "cifar10") == "crop_flip"
    assert resolve_augment("auto", "CIFAR100") == "crop_flip"
    assert resolve_augment("auto", "mnist-mini") == "none"
    assert resolve_augment("crop_flip", "mnist") == "crop_flip"
    assert resolve_augment("none", "cifar10") == "none"
    with pytest.raises(ConfigError, match="data.augment"):
        load_config(overrides=["data.augment=flip"])


class _Recorder(nn.Module):
    """A linear model that keeps every input batch it is trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


def test_local_train_augments_training_batches_only_when_asked() -> None:
    data = ClientData(torch.rand(20, 3, 8, 8), torch.randint(0, 2, (20,)))
    seen = {}
    for augment in ("none", "crop_flip"):
        model = _Recorder()
        ctx = TrainContext(model_fn=_Recorder, batch_size=8, seed=1, round=2, augment=augment)
        local_train(model, data, ctx, client_id=0)
        seen[augment] = torch.cat(model.seen)
    assert seen["none"].shape == seen["crop_flip"].shape == (20, 3, 8, 8)
    # without augmentation the model sees the raw samples (in shuffled order) ...
    raw = {tuple(r.flatten().tolist()) for r in data.x}
    assert all(tuple(r.flatten().tolist()) in raw for r in seen["none"])
    # ... with it, shifted or mirrored copies: zero-padded borders appear
    assert sum(tuple(r.flatten().tolist()) in raw for r in seen["crop_flip"]) < 10
    assert (seen["crop_flip"] == 0).float().mean() > 0.05 > (seen["none"] == 0).float().mean()


def test_step_schedule_gives_snfl_rates() -> None:
    rates = [scheduled_lr(r, 0.1, 100, "step", milestones=[61, 96]) for r in range(1, 101)]
    assert rates[:60] == [0.1] * 60
    assert rates[60] == pytest.approx(0.01) and rates[94] == pytest.approx(0.01)
    assert rates[95] == pytest.approx(0.001) and rates[99] == pytest.approx(0.001)


def test_cosine_schedule_with_warmup() -> None:
    rates = [scheduled_lr(r, 0.1, 10, "cosine", warmup=2) for r in range(1, 11)]
    assert rates[:2] == [pytest.approx(0.05), pytest.approx(0.1)]
    assert rates[2] == pytest.approx(0.1)  # first round after warm-up: the full rate
    assert all(a > b for a, b in zip(rates[2:], rates[3:], strict=False))
    assert 0 < rates[-1] < 0.01
    assert rates[-1] == pytest.approx(0.05 * (1 + math.cos(math.pi * 7 / 8)))
    assert scheduled_lr(5, 0.1, 10, "constant") == 0.1
    with pytest.raises(ValueError, match="lr_schedule"):
        scheduled_lr(1, 0.1, 10, "linear")


@pytest.mark.parametrize("overrides, match", [
    (["train.lr_schedule=step"], "lr_milestones"),
    (["train.lr_milestones=[3]"], "only applies"),
    (["train.lr_schedule=step", "train.lr_milestones=[5,3]"], "increasing"),
    (["train.lr_schedule=cosine", "train.lr_min=1.0"], "lr_min"),
    (["train.lr_warmup_rounds=15"], "lr_warmup_rounds"),
    (["train.amp=true"], "train.amp"),
])
def test_bad_recipe_configs_name_the_key(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)


def test_amp_on_a_machine_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = load_config(overrides=["device=auto", "train.amp=true"])
    with pytest.raises(ValueError, match="train.amp=true needs a CUDA GPU"):
        build_federation(cfg)


def _trimmed_run(tmp_path, name: str, *extra: str) -> list[dict]:
    sim = Simulation(load_config(overrides=[*TINY, *extra]), tmp_path / name)
    for c in sim.fed.clients:
        c.x, c.y = c.x[:96], c.y[:96]
    sim.run()
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
    for r in records:
        r.pop("wall_s")
    return records


def test_augmented_runs_are_bit_reproducible_and_log_the_scheduled_lr(tmp_path) -> None:
    recipe = ["data.augment=crop_flip", "train.rounds=3", "train.lr_schedule=step",
              "train.lr_milestones=[2,3]"]
    first = _trimmed_run(tmp_path, "a", *recipe)
    second = _trimmed_run(tmp_path, "b", *recipe)
    assert first == second
    assert [r["lr"] for r in first] == pytest.approx([0.05, 0.005, 0.0005])
    plain = _trimmed_run(tmp_path, "c", "train.rounds=3", "train.lr_schedule=step",
                         "train.lr_milestones=[2,3]")
    assert plain[0]["train_loss_mean"] != first[0]["train_loss_mean"]


def test_channels_last_on_cpu_trains_the_same_model(tmp_path) -> None:
    base = _trimmed_run(tmp_path, "nchw", "train.rounds=1")
    cl = _trimmed_run(tmp_path, "nhwc", "train.rounds=1", "train.channels_last=true")
    assert cl[0]["train_loss_mean"] == pytest.approx(base[0]["train_loss_mean"], rel=1e-4)
    assert cl[0]["server_acc"] == pytest.approx(base[0]["server_acc"], abs=0.011)


def test_vectorised_clients_refuse_the_recipe_options() -> None:
    model = nn.Linear(2, 2)
    ctx = TrainContext(model_fn=lambda: model, augment="crop_flip", channels_last=True)
    from spikefed.fl.fedavg import FedAvg

    reasons = " ".join(vectorize_blockers(FedAvg(), model, ctx))
    assert "data.augment" in reasons and "train.channels_last" in reasons
    assert vectorize_blockers(FedAvg(), model, TrainContext(model_fn=lambda: model)) == []
