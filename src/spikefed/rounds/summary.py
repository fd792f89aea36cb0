"""The run summary (summary.json) from the per-round records, the same for both engines."""

from __future__ import annotations

import math
from typing import Any

from spikefed.energy import energy_summary


def summarize(records: list[dict[str, Any]],
              energy_targets: list[float] | None = None) -> dict[str, Any]:
    """Final and best accuracies, total bytes, energy and time, from the per-round records
    (`energy_targets`: accuracies to report the energy to reach, `spikefed.energy`)."""
    evals = [r for r in records if r.get("server_acc") is not None
             or r.get("client_acc_mean") is not None]
    last = evals[-1] if evals else {}
    server_accs = [r["server_acc"] for r in evals if r.get("server_acc") is not None]
    return {
        "rounds": records[-1]["round"] if records else 0,
        "final_server_acc": last.get("server_acc"),
        "final_server_loss": last.get("server_loss"),
        "best_server_acc": max(server_accs) if server_accs else None,
        "final_client_acc_mean": last.get("client_acc_mean"),
        "final_client_acc_std": last.get("client_acc_std"),
        "total_bytes_up": sum(r["bytes_up"] for r in records),
        "total_bytes_down": sum(r["bytes_down"] for r in records),
        "spikes_per_sample": last.get("spikes_per_sample"),
        "synops_per_sample": last.get("synops_per_sample"),
        "energy_per_sample_pj": last.get("energy_per_sample_pj"),
        "wall_s": sum(r["wall_s"] for r in records),
        "finite": all(math.isfinite(r.get("train_loss_mean") or 0.0) and not r.get("nonfinite")
                      for r in records),
        **{k: v for k, v in (records[-1] if records else {}).items() if k.startswith("dp_")},
        **{k: v for k, v in last.items() if k.startswith("hw_")},
        **{k: last[k] for k in ("avg_task_acc", "forgetting") if k in last},
        **energy_summary(records, energy_targets),
    }
