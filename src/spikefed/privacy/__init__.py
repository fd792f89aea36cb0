"""Privacy: gradient-inversion attacks, leakage metrics, defenses and threat models."""

from spikefed.privacy.accountant import epsilon, rdp_sampled_gaussian
from spikefed.privacy.attacks import (
    AttackResult,
    Problem,
    cosine_distance,
    dlg,
    idlg,
    infer_labels,
    inverting_gradients,
    l2_distance,
    total_variation,
)
from spikefed.privacy.defenses import (
    DEFENSES,
    Defense,
    add_noise,
    clip_per_sample,
    defended_observation,
    dp_gradient,
    per_sample_grads,
    prune,
    snfl_convert,
)
from spikefed.privacy.domains import DOMAINS, InputDomain
from spikefed.privacy.event_victims import EVENT_SOURCES, event_victims
from spikefed.privacy.labels import idlg_label, multiset_accuracy, restore_batch_labels
from spikefed.privacy.metrics import (
    iterations_to_leak,
    label_accuracy,
    match_batch,
    mse,
    per_bin_scores,
    psnr,
    spike_f1,
    ssim,
    temporal_consistency,
)
from spikefed.privacy.protocol import (
    BIAS_ESTIMATES,
    ProtocolProblem,
    estimate_start_biases,
    recover_client_weights,
    weight_update,
)
from spikefed.privacy.statprior import make_prior, statprior_attack
from spikefed.privacy.threat import ThreatModel, observe

__all__ = [
    "BIAS_ESTIMATES",
    "DEFENSES",
    "DOMAINS",
    "EVENT_SOURCES",
    "AttackResult",
    "Defense",
    "InputDomain",
    "Problem",
    "ProtocolProblem",
    "ThreatModel",
    "add_noise",
    "clip_per_sample",
    "cosine_distance",
    "defended_observation",
    "dlg",
    "dp_gradient",
    "epsilon",
    "estimate_start_biases",
    "event_victims",
    "idlg",
    "idlg_label",
    "infer_labels",
    "inverting_gradients",
    "iterations_to_leak",
    "l2_distance",
    "label_accuracy",
    "make_prior",
    "match_batch",
    "mse",
    "multiset_accuracy",
    "observe",
    "per_bin_scores",
    "per_sample_grads",
    "prune",
    "psnr",
    "rdp_sampled_gaussian",
    "recover_client_weights",
    "restore_batch_labels",
    "snfl_convert",
    "spike_f1",
    "ssim",
    "statprior_attack",
    "temporal_consistency",
    "total_variation",
    "weight_update",
]
