"""FL-SNN: partial exchange, exact byte accounting, the Algorithm contract and the τ effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikefed.experiments.fl_snn import (
    FLSNNConfig,
    build_network,
    frames_from_archive,
    load_data,
    run_experiment,
)
from spikefed.fl.base import ClientData, TrainContext, payload_bytes
from spikefed.fl.flsnn import (
    FLSNN,
    LocalLearner,
    exchange_bytes,
    index_dtype,
    k_for_rate,
    n_dense_values,
    n_ff_values,
    partial_average,
    select_top_k,
    stream_order,
)
from spikefed.fl.flsnn_batched import RunSetting, _communicate, run_federated
from spikefed.models.glm import GLMNet
from spikefed.snn.glm import GLMSNN, LearningRule, Topology


@pytest.fixture(scope="module")
def data():
    return load_data(None)


def _tiny_snn() -> GLMSNN:
    return GLMSNN(Topology.layered(289, 2, 2), n_basis_ff=2, memory=5)


def test_partial_average_only_touches_senders() -> None:
    values = torch.tensor([[[1.0, 2.0, 3.0], [5.0, 6.0, 7.0], [9.0, 10.0, 11.0]]])
    sent = torch.tensor([[[True, False, False], [True, True, False], [False, True, False]]])
    out = partial_average(values, sent)
    assert out[0, :, 0].tolist() == [3.0, 3.0, 9.0]       # device 2 did not send coeff 0
    assert out[0, :, 1].tolist() == [2.0, 8.0, 8.0]       # device 0 did not send coeff 1
    assert out[0, :, 2].tolist() == [3.0, 7.0, 11.0]      # nobody sent coeff 2


def test_select_top_k_rows_and_index_dtype() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    mask = select_top_k(scores, torch.tensor([2, 1]))
    assert mask.tolist() == [[False, True, True, False], [True, False, False, False]]
    assert index_dtype(2**15) == torch.int16 and index_dtype(2**15 + 1) == torch.int32


def test_exchange_never_overwrites_unsent_local_coefficients() -> None:
    snn = _tiny_snn()
    rule = LearningRule(lr=0.01)
    n_runs, n_dev = 2, 2
    g = torch.Generator().manual_seed(0)
    params = snn.init_params(n_runs * n_dev, g, scale=3.0)
    params["ff"] += torch.randn(params["ff"].shape, generator=g) * snn.mask
    learner = LocalLearner(snn, rule, torch.zeros(1, 10, 289), torch.zeros(1, dtype=torch.long),
                           torch.zeros(n_runs * n_dev, 1, dtype=torch.long), g)
    learner.score = torch.rand(learner.score.shape, generator=g) * snn.mask
    before = {k: v.clone() for k, v in params.items()}
    k = k_for_rate(snn, 0.1)
    comm = torch.tensor([True, False])
    valid = snn.mask.expand_as(params["ff"][:1]).reshape(1, -1).bool()
    sent = _communicate(params, learner, comm, torch.tensor([k, k]), valid, n_dev)
    assert sent[0].sum(-1).tolist() == [k, k] and not sent[1].any()
    ff, old = params["ff"].view(n_runs, n_dev, -1), before["ff"].view(n_runs, n_dev, -1)
    assert torch.equal(ff[0][~sent[0]], old[0][~sent[0]])      # unsent: untouched
    assert torch.equal(ff[1], old[1])                         # run 1 did not communicate
    both = sent[0, 0] & sent[0, 1]
    only0 = sent[0, 0] & ~sent[0, 1]
    torch.testing.assert_close(ff[0, 0, both], old[0, :, both].mean(0))
    torch.testing.assert_close(ff[0, 0, only0], old[0, 0, only0])
    torch.testing.assert_close(params["bias"][:2], before["bias"][:2].mean(0).expand(2, -1))
    assert torch.all(learner.score.view(n_runs, n_dev, -1)[sent] == 0)


def test_engine_counts_bytes_of_what_it_sends(data) -> None:
    train, test = data
    snn = _tiny_snn()
    rule = LearningRule(lr=0.01, delta_s=5)
    devices = [(train.x[train.y == c][:5], train.y[train.y == c][:5]) for c in (0, 1)]
    settings = [RunSetting(2, 0.1), RunSetting(3, 1.0), RunSetting(None)]
    hist = run_federated(snn, rule, devices, (test.x[:4].float(), test.y[:4]), settings,
                         n_examples=2, n_evals=2)
    n_ff, n_dense = n_ff_values(snn), n_dense_values(snn)
    k = k_for_rate(snn, 0.1)
    assert hist.rounds.tolist() == [6, 4, 0]                 # T = 2 * 30 / 5 = 12 iterations
    sent_counts = [c[0].tolist() for _, c in hist.sent_per_round if c[0].any()]
    assert sent_counts == [[k, k]] * 6
    up, down = exchange_bytes(k, n_ff, n_dense)
    assert up == k * (4 + 2) + n_dense * 4 and down == (k + n_dense) * 4
    assert hist.bytes_up[0].tolist() == [6 * up] * 2
    assert hist.bytes_down[0].tolist() == [6 * down] * 2
    assert hist.bytes_up[1].tolist() == [4 * (n_ff + n_dense) * 4] * 2
    assert hist.bytes_up[2].sum() == 0


def test_algorithm_contract_partial_upload_and_aggregate(data) -> None:
    train, _ = data
    snn = _tiny_snn()
    rule = LearningRule(lr=0.01, delta_s=5)
    alg = FLSNN(snn, rule, tau=3, comm_rate=0.05, n_examples=4)
    model = GLMNet.of_network(snn, torch.Generator().manual_seed(0))
    server, broadcast = alg.init_server(model)
    clients = [ClientData(train.x[train.y == c][:4], train.y[train.y == c][:4]) for c in (0, 1)]
    states: list[dict] = [{}, {}]
    for _round in range(2):
        uploads = []
        for cid, cd in enumerate(clients):
            ctx = TrainContext(model_fn=lambda: model)
            down = alg.downlink(server, broadcast, cid)
            n_dense = n_dense_values(snn)
            expect = (exchange_bytes(alg.k, alg.n_ff, n_dense)[1] if _round
                      else exchange_bytes(alg.n_ff, alg.n_ff, n_dense)[1])  # new: full model
            assert payload_bytes(down) == expect
            up, states[cid], _ = alg.client_update(cid, down, states[cid], cd, ctx)
            assert up.nbytes == exchange_bytes(alg.k, alg.n_ff, n_dense_values(snn))[0]
            assert len(up.tensors["ff_index"]) == alg.k
            assert up.tensors["ff_index"].dtype == index_dtype(alg.n_ff)
            uploads.append(up)
        prev = server["params"]["ff"].reshape(-1).clone()
        server, broadcast = alg.aggregate(server, uploads)
        new = server["params"]["ff"].reshape(-1)
        idx = [u.tensors["ff_index"].long() for u in uploads]
        touched = torch.zeros_like(new, dtype=torch.bool)
        for i in idx:
            touched[i] = True
        assert torch.equal(new[~touched], prev[~touched])
        only0 = idx[0][~torch.isin(idx[0], idx[1])]
        assert torch.equal(new[only0], uploads[0].tensors["ff_values"][~torch.isin(idx[0], idx[1])])
    local = states[0]["params"]["ff"].reshape(-1).clone()
    ctx = TrainContext(model_fn=lambda: model)
    alg_frozen = FLSNN(snn, LearningRule(lr=0.0, delta_s=5), tau=1, comm_rate=0.05, n_examples=4)
    down = alg.downlink(server, broadcast, 0)
    _, st, _ = alg_frozen.client_update(0, down, states[0], clients[0], ctx)
    after = st["params"]["ff"].reshape(-1)
    mine = states[0]["sent_index"]
    unsent = torch.ones_like(after, dtype=torch.bool)
    unsent[mine] = False
    assert torch.equal(after[unsent], local[unsent])          # broadcast never overwrote these
    torch.testing.assert_close(after[mine], server["params"]["ff"].reshape(-1)[mine])
    torch.testing.assert_close(after[mine], down["ff_values"])


def test_stream_order_covers_pool_evenly() -> None:
    order = stream_order(5, 12, torch.Generator().manual_seed(0))
    counts = np.bincount(order.numpy(), minlength=5)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 12


def test_federation_helps_and_larger_tau_hurts(data) -> None:
    """Disjoint classes: τ=1 ends far below separate training; τ=50 (20 steps of drift since its
    last exchange at the end) ends above τ=1, for each of several seeds (3 trials each)."""
    train, test = data
    for seed in (0, 1):
        cfg = FLSNNConfig(taus=(1, 50), trials=3, n_examples=20, n_hidden=2, n_basis_ff=2,
                          memory=5, comm_rates=(), n_evals=2, seed=seed)
        rows = {r["tau"]: r for r in run_experiment(cfg, train, test).tau_rows}
        assert rows["separate"]["final_norm_loss_mean"] == pytest.approx(1.0)
        assert rows[1]["final_norm_loss_mean"] < 0.5
        assert rows[1]["final_accuracy_mean"] > 0.8 > rows["separate"]["final_accuracy_mean"]
        assert rows[50]["final_norm_loss_mean"] > 1.5 * rows[1]["final_norm_loss_mean"]
        assert (rows[1]["rounds"], rows[50]["rounds"]) == (120, 2)   # T = 20 * 30 / 5
        assert rows[1]["bytes_up_per_device"] == 60 * rows[50]["bytes_up_per_device"]


def test_config_and_network_validate_inputs() -> None:
    with pytest.raises(ValueError, match="taus"):
        FLSNNConfig(taus=(0,))
    with pytest.raises(ValueError, match="comm_rate"):
        RunSetting(1, 0.0)
    snn, rule = build_network(FLSNNConfig(), 289)
    assert snn.topology.n_input == 289 and rule.delta_s == 5
    with pytest.raises(ValueError, match="delta_s"):
        LocalLearner(snn, LearningRule(delta_s=7), torch.zeros(1, 30, 289),
                     torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
                     torch.Generator())


def test_bundled_asset_equals_preprocessed_archive(shared_data, data) -> None:
    train, test = data
    archive = shared_data / "nmnist_small" / "NMNISTsmall.tar.gz"
    x, y, ids = frames_from_archive(archive, "test")
    assert np.array_equal(x, test.x.numpy()) and np.array_equal(y, test.y.numpy())
    assert len(ids) == 29 and train.x.shape == (233, 30, 289)
    assert 0.05 < train.x.float().mean() < 0.3


def test_cli_writes_tables_and_figures(tmp_path) -> None:
    from typer.testing import CliRunner

    from spikefed.cli import app

    out = tmp_path / "fl"
    res = CliRunner().invoke(app, ["reproduce", "fl-snn", "--out", str(out), "--taus", "1,3",
                                   "--trials", "1", "--examples", "2"])
    assert res.exit_code == 0, res.output
    for name in ("curves.csv", "tau_sweep.csv", "partial_exchange.csv", "summary.md",
                 "fl_snn_loss.png", "fl_snn_accuracy.png", "fl_snn_partial_exchange.png"):
        assert (out / name).stat().st_size > 0
    assert "separate" in (out / "tau_sweep.csv").read_text()
    bad = CliRunner().invoke(app, ["reproduce", "fl-snn", "--out", str(out), "--taus", "1,x"])
    assert bad.exit_code == 2 and "--taus" in bad.output


ENGINE = ["data.dataset=nmnist-mini", "data.events.polarity=merge", "data.events.downsample=17",
          "model.name=glm", "model.T=10", "model.kwargs.n_hidden=3", "model.kwargs.memory=5",
          "data.partition.scheme=iid", "data.test_subset=20", "algorithm.name=flsnn",
          "algorithm.params.tau=2", "train.eval_clients=false"]


def _engine_run(tmp_path, *extra: str):
    from spikefed.config import load_config
    from spikefed.report import read_metrics
    from spikefed.sim import Simulation

    cfg = load_config(overrides=[*ENGINE, *extra])
    sim = Simulation(cfg, tmp_path)
    for c in sim.fed.clients:
        c.x, c.y = c.x[:12], c.y[:12]
    sim.run()
    return cfg, sim, read_metrics(tmp_path / "metrics.jsonl")


def test_engine_partial_exchange_with_late_joiners_counts_exact_bytes(tmp_path) -> None:
    """Partial participation: devices first join after round 1 (once a KeyError: 'ff'). Each
    round's bytes_down is exactly what was sent: the full model (n_ff + dense values) to a device
    the server has no upload from, the K means it last sent (+ dense) to one it has."""
    from spikefed.rounds.sampling import sample_clients

    cfg, sim, records = _engine_run(tmp_path, "data.num_clients=5", "train.clients_per_round=2",
                                    "train.rounds=5", "algorithm.params.comm_rate=0.2")
    alg = sim.fed.algorithm
    n_dense = n_dense_values(alg.snn)
    full = exchange_bytes(alg.n_ff, alg.n_ff, n_dense)[1]
    up, down = exchange_bytes(alg.k, alg.n_ff, n_dense)
    assert alg.partial and down < full
    seen: set[int] = set()
    late = False
    for r, rec in enumerate(records, start=1):
        chosen, _ = sample_clients(5, cfg, r)
        late |= r > 1 and any(c not in seen for c in chosen)
        assert rec["bytes_down"] == sum(down if c in seen else full for c in chosen), r
        assert rec["bytes_up"] == len(chosen) * up and rec["uploads"] == len(chosen)
        assert 0 <= rec["server_acc"] <= 1
        seen |= set(chosen)
    assert late, "the sampled rounds must contain a device joining after round 1"


def test_engine_full_exchange_sends_every_synapse_both_ways(tmp_path) -> None:
    _, sim, records = _engine_run(tmp_path, "data.num_clients=2", "train.rounds=2")
    alg = sim.fed.algorithm
    full = exchange_bytes(alg.n_ff, alg.n_ff, n_dense_values(alg.snn))
    assert not alg.partial
    assert [(r["bytes_up"], r["bytes_down"]) for r in records] == [(2 * full[0], 2 * full[1])] * 2


def test_registry_params_and_model_errors_name_the_fix(tmp_path) -> None:
    from spikefed.config import load_config
    from spikefed.experiment import build_federation
    from spikefed.fl.registry import build_algorithm
    from spikefed.sim import Simulation

    with pytest.raises(ValueError, match="comm_rate"):
        build_algorithm("flsnn", {"comm_rate": 1.5})
    with pytest.raises(ValueError, match="instead of comm_rate"):
        build_algorithm("flsnn", {"comm_rate": 0.5, "k": 10})
    with pytest.raises(ValueError, match="model.name=glm"):
        Simulation(load_config(overrides=["algorithm.name=flsnn"]), tmp_path)
    with pytest.raises(ValueError, match="delta_s=3 must divide model.T=10"):
        Simulation(load_config(overrides=[*ENGINE, "algorithm.params.delta_s=3"]), tmp_path)
    with pytest.raises(ValueError, match="event set"):
        build_federation(load_config(overrides=["model.name=glm"])).model_fn()


def test_client_without_server_binds_its_network_from_the_model(data) -> None:
    """A Flower node's algorithm never sees init_server: it takes the GLM network from
    ctx.model_fn, and trains to the same upload as the server-side instance."""
    from spikefed.fl.registry import build_algorithm

    train, _ = data
    snn = _tiny_snn()
    model = GLMNet.of_network(snn, torch.Generator().manual_seed(0))
    server_side = build_algorithm("flsnn", {"tau": 2, "k": 7})
    _, broadcast = server_side.init_server(model)
    node_side = build_algorithm("flsnn", {"tau": 2, "k": 7})
    assert node_side.snn is None
    cd = ClientData(train.x[:4], train.y[:4])
    ctx = TrainContext(model_fn=lambda: GLMNet.of_network(snn))
    a, _, _ = server_side.client_update(1, broadcast, {}, cd, ctx)
    b, _, _ = node_side.client_update(1, broadcast, {}, cd, ctx)
    assert node_side.snn is snn and len(b.tensors["ff_index"]) == 7
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
