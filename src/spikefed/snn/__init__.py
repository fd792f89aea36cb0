"""Spiking neural network core: surrogate gradients, neurons, encoders and activity counters."""

from spikefed.snn.counters import ActivityCounter, conv_fanout_map
from spikefed.snn.encoders import (
    ENCODERS,
    ENCODINGS,
    DirectEncoder,
    LatencyEncoder,
    RateEncoder,
    encode,
)
from spikefed.snn.neurons import (
    IF,
    LIF,
    NEURONS,
    Decay,
    SpikingNeuron,
    Threshold,
    make_neuron,
    register_neuron,
)
from spikefed.snn.surrogate import (
    SURROGATES,
    ATanSpike,
    FastSigmoidSpike,
    SigmoidSpike,
    SurrogateSpike,
    TriangleSpike,
    get_surrogate,
    spike,
)

__all__ = [
    "ActivityCounter",
    "ATanSpike",
    "Decay",
    "DirectEncoder",
    "ENCODERS",
    "ENCODINGS",
    "FastSigmoidSpike",
    "IF",
    "LIF",
    "LatencyEncoder",
    "NEURONS",
    "register_neuron",
    "RateEncoder",
    "SURROGATES",
    "SigmoidSpike",
    "SpikingNeuron",
    "SurrogateSpike",
    "Threshold",
    "TriangleSpike",
    "conv_fanout_map",
    "encode",
    "get_surrogate",
    "make_neuron",
    "spike",
]
