"""Evaluation on simulated chips: each client on its own, the server on a held-out population."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from spikefed.config import HardwareConfig
from spikefed.fl.base import Algorithm, Upload
from spikefed.fl.on_chip import HELD_OUT_BASE, chip_for
from spikefed.sim.evaluate import evaluate
from spikefed.snn.hardware import Chip, place_on_chip, spiking_neurons, worst_fraction_mean


def accuracy_on_chip(model: nn.Module, chip: Chip, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int, device: torch.device) -> float:
    """Test accuracy of a copy of ``model`` placed on ``chip``."""
    with torch.random.fork_rng(devices=[]):
        return evaluate(place_on_chip(copy.deepcopy(model), chip), x, y, batch_size,
                        device).accuracy


def hardware_record(hw: HardwareConfig, alg: Algorithm, server_state: dict[str, Any],
                    client_states: dict[int, dict[str, Any]], uploads: list[Upload],
                    model_fn: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    device: torch.device, eval_clients: bool) -> dict[str, Any]:
    """Per-round on-chip metrics: server on ``hw.eval_chips`` held-out chips (mean, worst
    10 %, each chip) and every uploading client's model on its own chip (mean)."""
    rec: dict[str, Any] = {}
    server = alg.server_model(server_state, model_fn)
    if server is not None and hw.eval_chips > 0:
        accs = [accuracy_on_chip(server, chip_for(hw, HELD_OUT_BASE + k), x, y, batch_size,
                                 device) for k in range(hw.eval_chips)]
        rec.update(hw_server_acc_mean=float(np.mean(accs)),
                   hw_server_acc_worst10=worst_fraction_mean(accs, 0.1), hw_server_acc_chips=accs)
    if eval_clients and uploads:
        accs = []
        for u in uploads:
            tensors = alg.client_model_state(u, client_states[u.client_id])
            if tensors is None:
                continue
            model = model_fn()
            model.load_state_dict(tensors)
            if spiking_neurons(model):  # SNFL clients hold ANNs: no chip to run on
                accs.append(accuracy_on_chip(model, chip_for(hw, u.client_id), x, y,
                                             batch_size, device))
        if accs:
            rec["hw_client_acc_mean"] = float(np.mean(accs))
    return rec
