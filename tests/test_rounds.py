"""The engine-neutral round layer: import boundaries and the upload pipeline's hooks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import spikefed
from spikefed.config import load_config
from spikefed.experiment import build_federation
from spikefed.fl import registry
from spikefed.fl.base import Upload
from spikefed.report.metrics import read_metrics
from spikefed.rounds.pipeline import RoundIntake, UploadPipeline
from spikefed.rounds.validation import Rejection, RoundFailedError
from spikefed.sim import Simulation

PACKAGE = Path(spikefed.__file__).parent


def _imports(package: str) -> list[tuple[Path, str]]:
    """(file, imported module) for every import in `spikefed.<package>`, lazy ones included."""
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((path, node.module))
    return found


@pytest.mark.parametrize(("engine", "other"), [("sim", "flower"), ("flower", "sim")])
def test_neither_engine_imports_the_other(engine, other) -> None:
    bad = [(p.name, m) for p, m in _imports(engine)
           if m == f"spikefed.{other}" or m.startswith(f"spikefed.{other}.")]
    assert bad == [], f"spikefed.{engine} imports spikefed.{other}: {bad}"


def test_round_layer_imports_no_engine() -> None:
    bad = [(p.name, m) for p, m in _imports("rounds")
           if m.startswith(("spikefed.sim", "spikefed.flower"))]
    assert bad == []


@pytest.mark.parametrize("engine", ["sim", "flower", "rounds"])
def test_no_algorithm_specific_type_checks_in_engines(engine) -> None:
    """No `isinstance(x, <an algorithm class>)` in an engine: algorithms differ by methods."""
    algorithm_classes = {spec.factory.__name__ for spec in registry.ALGORITHMS.values()}
    algorithm_classes |= {"SNFL", "SampleLevelDP", "ClientLevelDP", "OnChipTraining",
                          "DelegatingAlgorithm"}
    for path in sorted((PACKAGE / engine).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("isinstance", "issubclass")):
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                assert not names & algorithm_classes, f"{path.name}: {ast.unparse(node)}"


SMALL = ["data.num_clients=4", "train.rounds=2", "model.T=2", "model.kwargs.hidden=[8]",
         "data.test_subset=50", "data.partition.scheme=iid"]


def _sim(tmp_path, *extra: str) -> Simulation:
    sim = Simulation(load_config(overrides=[*SMALL, *extra]), tmp_path)
    for c in sim.fed.clients:
        c.x, c.y = c.x[:32], c.y[:32]
    return sim


def test_pipeline_stage_rejects_before_quorum_and_decoder_sees_every_upload(tmp_path) -> None:
    """A stage (e.g. a filter a codec or defence adds) drops uploads into `rejected` and
    their client state is discarded; a decoder runs on each upload before validation."""
    sim = _sim(tmp_path / "run")
    decoded: list[int] = []

    def decoder(upload: Upload, sent) -> Upload:
        decoded.append(upload.client_id)
        return upload

    def drop_client_1(round_idx: int, uploads: list[Upload]):
        return ([u for u in uploads if u.client_id != 1],
                [Rejection(1, f"stage refused it in round {round_idx}")])

    sim.pipeline.add_decoder(decoder)
    sim.pipeline.add_stage(drop_client_1)
    sim.run()
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert sorted(decoded) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [r["uploads"] for r in recs] == [3, 3]
    assert recs[0]["rejected"] == [{"client": 1, "reason": "stage refused it in round 1"}]
    assert "aggregator_rejected" not in recs[0]  # the default mean filters nothing


def test_undecodable_upload_is_rejected_and_quorum_still_applies(tmp_path) -> None:
    sim = _sim(tmp_path / "run", "train.min_clients=4")

    def broken(upload: Upload, sent) -> Upload:
        if upload.client_id == 2:
            raise ValueError("bad header")
        return upload

    sim.pipeline.add_decoder(broken)
    with pytest.raises(RoundFailedError, match="client 2: undecodable upload: bad header"):
        sim.run()


def test_wire_bytes_are_counted_before_decoding(tmp_path) -> None:
    """bytes_up is what clients sent: a decoder that inflates uploads does not change it."""
    cfg = load_config(overrides=SMALL)
    fed = build_federation(cfg)
    pipeline = UploadPipeline.for_config(cfg, fed.algorithm, fed.model_fn(), 10)
    params = fed.initial_model().state_dict()
    half = {k: v.half() for k, v in params.items()}
    pipeline.add_decoder(lambda u, _: Upload(u.client_id, {k: v.float() for k, v in
                                                        u.tensors.items()}, u.num_samples))
    intake = RoundIntake()
    size = len(fed.clients[0])
    assert pipeline.receive(intake, Upload(0, half, size), 0, params, size)
    assert intake.bytes_up == sum(v.numel() * 2 for v in params.values())
    assert intake.uploads[0].tensors["fc1.weight"].dtype == torch.float32


def test_a_registered_neuron_is_a_config_choice(tmp_path) -> None:
    """Adding a neuron: one class and one `register_neuron` line; the config then takes it."""
    from spikefed.snn import LIF, NEURONS, register_neuron

    class HalfLeak(LIF):
        def __init__(self, threshold: float = 1.0, reset: str = "subtract",
                     surrogate: str = "atan", alpha: float = 2.0,
                     learn_threshold: bool = False) -> None:
            super().__init__(beta=0.5, threshold=threshold, reset=reset, surrogate=surrogate,
                             alpha=alpha, learn_threshold=learn_threshold)

    register_neuron("half_leak", HalfLeak)
    try:
        with pytest.raises(ValueError, match="HalfLeak neuron has no leak to learn"):
            load_config(overrides=[*SMALL, "model.neuron.type=half_leak",
                                   "model.neuron.learn_beta=true"])
        sim = _sim(tmp_path, "model.neuron.type=half_leak", "train.rounds=1")
        neurons = [m for m in sim.fed.model_fn().modules() if isinstance(m, HalfLeak)]
        assert neurons and all(n.beta == 0.5 for n in neurons)
    finally:
        del NEURONS["half_leak"]
    with pytest.raises(ValueError, match="model.neuron.type='half_leak' is unknown"):
        load_config(overrides=[*SMALL, "model.neuron.type=half_leak"])
