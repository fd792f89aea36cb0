"""Data: image and event-camera readers, bundled subsets, the event-camera emulator,
partitioners and feature skew."""

from .binning import EventBinning
from .dataset import ArrayDataset
from .emulate import EmulatorConfig, emulate_events, emulate_frames
from .event_sets import EVENT_SETS, load_event_dataset
from .feature_skew import feature_skew
from .partition import PARTITIONERS, label_distribution, label_skew, partition
from .plot import plot_partition
from .registry import DATASETS, DatasetInfo, dataset_info, load_dataset

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DatasetInfo",
    "EVENT_SETS",
    "EmulatorConfig",
    "EventBinning",
    "PARTITIONERS",
    "dataset_info",
    "emulate_events",
    "emulate_frames",
    "feature_skew",
    "label_distribution",
    "label_skew",
    "load_event_dataset",
    "load_dataset",
    "partition",
    "plot_partition",
]
