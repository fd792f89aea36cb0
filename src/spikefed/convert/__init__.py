"""ANN -> SNN conversion: BatchNorm folding, IF thresholds, layer-wise calibration.

See ``docs/conversion.md``. Nothing here knows about federation; SNFL builds on it.
"""

from spikefed.convert.bn import bn_pairs, fold_bn, fold_bn_tensors, unfold_bn_weight
from spikefed.convert.convert import (
    CALIBRATIONS,
    ConvertedSNN,
    convert_ann_to_snn,
    snn_thresholds,
    spiking_copy,
)
from spikefed.convert.neuron import ConvertedIF
from spikefed.convert.sweep import accuracy_vs_T, predict
from spikefed.convert.threshold import (
    THRESHOLD_METHODS,
    clip_quantize,
    find_channel_thresholds,
    find_threshold,
)
from spikefed.convert.trace import Structure, trace_structure

__all__ = [
    "CALIBRATIONS",
    "THRESHOLD_METHODS",
    "ConvertedIF",
    "ConvertedSNN",
    "Structure",
    "accuracy_vs_T",
    "bn_pairs",
    "clip_quantize",
    "convert_ann_to_snn",
    "find_channel_thresholds",
    "find_threshold",
    "fold_bn",
    "fold_bn_tensors",
    "predict",
    "snn_thresholds",
    "spiking_copy",
    "trace_structure",
    "unfold_bn_weight",
]
