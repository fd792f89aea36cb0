"""Accuracy of converted SNNs against simulation length ``T`` and calibration pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikefed.convert.convert import convert_ann_to_snn

BatchProgress = Callable[[int, int], None]


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 500,
            progress: BatchProgress | None = None) -> Tensor:
    """Predicted classes of ``model`` (eval mode) on ``x``, on the model's device, as CPU ints.

    Runs in batches of ``batch_size`` (a converted SNN runs in step order, so its memory is
    one time step's state per batch, whatever T); ``progress(done, total)`` after each batch.
    """
    p = next(model.parameters())
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        out.append(model(x[i:i + batch_size].to(p.device, p.dtype)).argmax(1).cpu())
        if progress is not None:
            progress(min(i + batch_size, len(x)), len(x))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy_vs_T(
    ann: nn.Module,
    calib_x: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    Ts: Sequence[int],
    calibrations: Sequence[str],
    *,
    threshold: str = "mmse",
    half_init: bool = True,
    batch_size: int = 500,
    progress: Callable[[dict[str, Any]], None] | None = None,
    batch_progress: BatchProgress | None = None,
    **convert_kwargs: Any,
) -> list[dict[str, Any]]:
    """Convert ``ann`` for every ``T`` x calibration and measure test accuracy.

    Rows: ``T, calibration, threshold, accuracy, ann_accuracy, agreement`` (fraction of test
    inputs where SNN and ANN predict the same class), ``convert_s, eval_s, seconds`` (the
    cell's total). ``progress`` is called with each row as it is finished, ``batch_progress``
    with ``(done, total)`` test images while a cell is evaluated.
    """
    if len(test_x) != len(test_y) or len(test_y) == 0:
        raise ValueError(f"test_x ({len(test_x)}) and test_y ({len(test_y)}) must be the same, "
                         "non-zero length")
    if not Ts or not calibrations:
        raise ValueError("Ts and calibrations must each name at least one value")
    test_y = test_y.cpu()
    ann_pred = predict(ann, test_x, batch_size)
    ann_acc = float((ann_pred == test_y).float().mean())
    rows = []
    for calibration in calibrations:
        for T in Ts:
            t0 = time.perf_counter()
            snn = convert_ann_to_snn(ann, calib_x, int(T), threshold=threshold,
                                     calibration=calibration, half_init=half_init,
                                     **convert_kwargs)
            t1 = time.perf_counter()
            pred = predict(snn.model, test_x, batch_size, batch_progress)
            row = {
                "T": int(T), "calibration": calibration, "threshold": threshold,
                "accuracy": float((pred == test_y).float().mean()), "ann_accuracy": ann_acc,
                "agreement": float((pred == ann_pred).float().mean()),
                "convert_s": t1 - t0, "eval_s": time.perf_counter() - t1,
            }
            row["seconds"] = row["convert_s"] + row["eval_s"]
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows
