"""Hardware-aware training: each client trains on its own simulated chip (`hardware.aware`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.wrap import DelegatingAlgorithm
from spikefed.snn.hardware import Chip, place_on_chip

#: Device ids of the held-out chips start here (client ``i`` owns chip ``i``).
HELD_OUT_BASE = 1_000_000


def chip_for(hw: Any, device_id: int) -> Chip:
    """The chip with ``device_id`` in the population a ``HardwareConfig`` describes."""
    return Chip(device_id, hw.seed, hw.threshold_sigma, hw.beta_sigma, hw.weight_bits,
                hw.read_noise)


class OnChipTraining(DelegatingAlgorithm):
    """``base`` whose clients build every local model on their own chip (``chip_of(cid)``)."""

    def __init__(self, base: Algorithm, chip_of: Any) -> None:
        super().__init__(base)
        self.chip_of = chip_of

    def client_update(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                      data: ClientData, ctx: TrainContext
                      ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        chip: Chip = self.chip_of(client_id)
        build = ctx.model_fn

        def on_chip() -> nn.Module:
            return place_on_chip(build(), chip)

        return self.base.client_update(client_id, broadcast, client_state, data,
                                       replace(ctx, model_fn=on_chip))
