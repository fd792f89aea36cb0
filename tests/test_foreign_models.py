"""Bring your own model: snnTorch and SpikingJelly networks federated with FedAvg."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import load_config
from spikefed.experiment import build_federation
from spikefed.models.foreign import ForeignModel
from spikefed.sim import Simulation
from spikefed.snn.counters import ActivityCounter

sys.path.insert(0, str(Path(__file__).parent))  # byo_models for "byo_models:factory" specs
import byo_models  # noqa: E402

BASE = ["train.rounds=3", "data.num_clients=3", "model.T=4", "data.test_subset=300",
        "train.batch_size=32", "train.lr=0.1", "train.eval_clients=false",
        "data.partition.scheme=iid"]


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{module} missing in CI; `make dev` installs it with --no-deps")
        pytest.skip(f"{module} is not installed (pip install --no-deps {module})")


def _accs(out: Path) -> list[float]:
    import json

    return [json.loads(line)["server_acc"] for line in (out / "metrics.jsonl").read_text()
            .splitlines()]


@pytest.mark.parametrize("spec,module", [("byo_models:snntorch_mlp", "snntorch"),
                                         ("byo_models:spikingjelly_mlp", "spikingjelly")])
def test_foreign_snn_trains_with_fedavg(spec, module, tmp_path) -> None:
    _need(module)
    cfg = load_config(None, BASE + [f"model.name={spec}"])
    fed = build_federation(cfg)
    model = fed.model_fn()
    assert isinstance(model, ForeignModel) and model.kind == module
    x = fed.test_x[:16]
    with torch.no_grad(), ActivityCounter(model) as counter:
        first = model(x)
    neurons = 64 + (10 if module == "snntorch" else 0)  # snnTorch's readout is a Leaky too
    assert counter.neuron_updates == 4 * 16 * neurons  # foreign neurons are hooked (T x B x N)
    with torch.no_grad():
        assert torch.equal(model(x), first)  # state is reset per forward: same input, same out
        assert model(fed.test_x[:5]).shape == (5, 10)  # and the batch size may change
    summary = Simulation(cfg, tmp_path / "run", federation=fed).run()
    assert summary["spikes_per_sample"] > 0  # spikes of the trained foreign net are counted
    accs = _accs(tmp_path / "run")
    assert accs[-1] > accs[0] and accs[-1] > 0.5, accs
    if module == "snntorch":  # its int64 buffers stay integers through FedAvg
        state = Simulation(cfg, tmp_path / "run", federation=fed)._restore().broadcast
        ints = [k for k, v in state.items() if not torch.is_floating_point(v)]
        assert ints and all(state[k].dtype == torch.int64 for k in ints)


def test_python_api_takes_a_factory(tmp_path) -> None:
    cfg = load_config(None, BASE + ["train.rounds=2"])
    fed = build_federation(cfg, model=byo_models.plain_ann)
    model = fed.model_fn()
    assert isinstance(model, ForeignModel) and model.kind == "ann"
    summary = Simulation(cfg, tmp_path / "api", federation=fed).run()
    assert summary["final_server_acc"] > 0.5


@pytest.mark.parametrize("spec,message", [
    ("nosuchpkg.mod:f", "cannot import 'nosuchpkg.mod'"),
    ("byo_models:missing", "has no attribute 'missing'"),
    ("byo_models:not_a_module", "is not callable"),
    (":factory", "'package.module:factory'"),
])
def test_bad_custom_model_is_a_clean_cli_error(spec, message, tmp_path) -> None:
    res = CliRunner().invoke(app, ["run", "--set", f"model.name={spec}", "--out",
                                   str(tmp_path / "x")])
    assert res.exit_code == 2 and message in " ".join(res.output.split())
