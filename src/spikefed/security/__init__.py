"""Backdoor attacks on federated clients (data poisoning, scaled model replacement) and their
detection from uploaded SNN thresholds."""

from spikefed.security.backdoor import Trigger, add_trigger, attack_success_rate, poison_client
from spikefed.security.detection import (
    anomaly_scores,
    flag_outliers,
    roc_auc,
    separation_ratio,
    threshold_vectors,
)
from spikefed.security.replacement import ModelReplacement, boost_tensors

__all__ = [
    "ModelReplacement", "Trigger", "add_trigger", "anomaly_scores", "attack_success_rate",
    "boost_tensors", "flag_outliers", "poison_client", "roc_auc", "separation_ratio",
    "threshold_vectors",
]
