"""Federated algorithms as pure functions over named tensors."""

from spikefed.fl.aggregation import weighted_average
from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload, payload_bytes
from spikefed.fl.registry import ALGORITHMS, build_algorithm, register_algorithm

__all__ = [
    "ALGORITHMS", "Algorithm", "ClientData", "Tensors", "TrainContext", "Upload",
    "build_algorithm", "payload_bytes", "register_algorithm", "weighted_average",
]
