"""Evaluation on simulated chips: each client on its own, the server on a held-out population."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from spikefed.config import HardwareConfig
from spikefed.fl.on_chip import HELD_OUT_BASE, chip_for
from spikefed.rounds.evaluate import evaluate
from spikefed.snn.hardware import Chip, place_on_chip, spiking_neurons, worst_fraction_mean


def accuracy_on_chip(model: nn.Module, chip: Chip, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int, device: torch.device) -> float:
    """Test accuracy of a copy of ``model`` placed on ``chip``."""
    with torch.random.fork_rng(devices=[]):
        return evaluate(place_on_chip(copy.deepcopy(model), chip), x, y, batch_size,
                        device).accuracy


def hardware_server_record(hw: HardwareConfig, server: nn.Module | None, x: torch.Tensor,
                           y: torch.Tensor, batch_size: int, device: torch.device
                           ) -> dict[str, Any]:
    """The server model on ``hw.eval_chips`` held-out chips: mean, worst 10 %, each chip."""
    if server is None or hw.eval_chips == 0:
        return {}
    accs = [accuracy_on_chip(server, chip_for(hw, HELD_OUT_BASE + k), x, y, batch_size, device)
            for k in range(hw.eval_chips)]
    return {"hw_server_acc_mean": float(np.mean(accs)),
            "hw_server_acc_worst10": worst_fraction_mean(accs, 0.1), "hw_server_acc_chips": accs}


def client_chip_accuracy(hw: HardwareConfig, client_id: int, model: nn.Module, x: torch.Tensor,
                         y: torch.Tensor, batch_size: int, device: torch.device) -> float | None:
    """A client's local model on the client's own chip (None: not spiking, e.g. SNFL's ANNs)."""
    if not spiking_neurons(model):
        return None
    return accuracy_on_chip(model, chip_for(hw, client_id), x, y, batch_size, device)
