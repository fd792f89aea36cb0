"""Run the privacy benchmark: every (seed, domain, model, defense, sample, attack) of the plan,
on ``cfg.device``; results move to the CPU before the report is written."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from spikefed.data import load_dataset
from spikefed.experiments.privacy.attack import result_row, run_one
from spikefed.experiments.privacy.config import AttackConfig, attack_device
from spikefed.experiments.privacy.plan import runs_defense
from spikefed.experiments.privacy.report import write_outputs
from spikefed.experiments.privacy.victims import load_victim_data, models_for
from spikefed.privacy import metrics as M
from spikefed.privacy.attacks import Problem
from spikefed.privacy.clients import domain_for, set_ann_activation
from spikefed.privacy.defenses import Defense, defended_observation, snfl_convert
from spikefed.privacy.threat import ThreatModel


def _epsilon(defense: Defense, cfg: AttackConfig) -> float | None:
    if defense.kind != "dpsgd" or defense.sigma <= 0:
        return None
    from spikefed.privacy.accountant import epsilon

    steps = cfg.threat.local_steps if cfg.threat.kind == "fedavg" else 1
    return epsilon(1.0, defense.sigma, steps, 1e-5)[0]


def run_attack_benchmark(
    cfg: AttackConfig, out: Path, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Run every (seed, domain, model, defense, sample, attack) and write the outputs to ``out``.

    Models, victim data and attack variables live on ``cfg.device``; seeded draws come from
    CPU generators, so a GPU run starts from the same dummies and noise as a CPU run.
    """
    device = attack_device(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    threat = ThreatModel(cfg.threat.kind, cfg.threat.local_steps, cfg.threat.lr)
    rows: list[dict[str, Any]] = []
    examples: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    curves: dict[tuple[str, str, str, str], list[list[tuple[float, float]]]] = {}
    b = cfg.threat.batch_size
    for seed in cfg.seeds:
        for dom_kind in cfg.domain.kinds:
            xs, ys = load_victim_data(cfg, dom_kind, device)
            domain = domain_for(
                dom_kind, tuple(xs.shape[1:]), cfg.model.T, cfg.domain.relax, cfg.domain.tau
            )
            models, ann = models_for(dom_kind, cfg, tuple(xs.shape[1:]), seed, device)
            for kind, model in models.items():
                for dsec in cfg.defenses:
                    defense = Defense(dsec.kind, dsec.sigma, dsec.ratio, dsec.clip)
                    victim, thresholds, model_name = model, None, kind
                    dom = replace(domain, stacked=kind == "ann" and domain.temporal)
                    if not runs_defense(dom_kind, kind, defense.kind):
                        continue
                    if defense.kind == "snfl":
                        calib = torch.as_tensor(
                            load_dataset("mnist-mini", "train").x[: cfg.snfl_calibration],
                            device=device,
                        ).float()
                        relu_ann = set_ann_activation(copy.deepcopy(ann), "relu")
                        conv = snfl_convert(relu_ann, calib, cfg.model.T)
                        victim, thresholds, model_name = conv.model.train(), conv.thresholds, "snfl"
                    for i in range(cfg.data.samples):
                        x, y = xs[i * b : (i + 1) * b], ys[i * b : (i + 1) * b]
                        gen = torch.Generator().manual_seed(seed * 7919 + i)
                        target = defended_observation(
                            victim, dom.client_input(x), y, threat, defense, gen
                        )
                        problem = Problem(victim, target, threat, dom, 10, b)
                        for attack in cfg.attacks:
                            t0 = time.perf_counter()
                            res = run_one(attack, problem, cfg, x, seed, thresholds)
                            row = result_row(res, problem, x, y)
                            row.update(
                                attack=attack,
                                model=model_name,
                                domain=dom_kind,
                                defense=defense.label,
                                seed=seed,
                                sample=i,
                                batch_size=b,
                                epsilon=_epsilon(defense, cfg),
                                seconds=time.perf_counter() - t0,
                            )
                            rows.append(row)
                            key = (dom_kind, defense.label, model_name)
                            examples.setdefault(key, {"truth": x[0].cpu()})
                            if i == 0 and seed == cfg.seeds[0]:
                                examples[key][attack] = _first_match(res.reconstruction, x)
                            curves.setdefault(
                                (dom_kind, defense.label, attack, model_name), []
                            ).append(
                                [(h["iteration"], h["psnr"]) for h in res.history if "psnr" in h]
                            )
                            if progress is not None:
                                progress(f"{attack}/{model_name}/{dom_kind}: {row['psnr']:.1f} dB")
    write_outputs(rows, examples, curves, cfg, str(device), out)
    return rows



def _first_match(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The reconstruction matched to ``x[0]``, on the CPU (wrong batch-size guess: ``x_hat[0]``)."""
    if x_hat.shape != x.shape:
        return x_hat[0].cpu()
    return x_hat[M.match_batch(x_hat, x)][0].cpu()
