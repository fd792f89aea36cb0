"""Image data: local readers, the bundled `mnist-mini`, partitioners and feature skew."""

from .dataset import ArrayDataset
from .feature_skew import feature_skew
from .partition import PARTITIONERS, label_distribution, label_skew, partition
from .plot import plot_partition
from .registry import DATASETS, DatasetInfo, dataset_info, load_dataset

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DatasetInfo",
    "PARTITIONERS",
    "dataset_info",
    "feature_skew",
    "label_distribution",
    "label_skew",
    "load_dataset",
    "partition",
    "plot_partition",
]
