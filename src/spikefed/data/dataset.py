"""In-memory image dataset shared by every reader, model and partitioner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ArrayDataset:
    """Images `x` float32 `[N, C, H, W]` in [0, 1] and integer labels `y` `[N]`.

    Event data sets hold uint8 event frames `[N, T, C, H, W]` instead (see `data.event_sets`):
    a minibatch `x[idx]` is `[B, T, C, H, W]`, which zoo models built with
    `temporal_input="batch_first"` take directly.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if self.x.dim() == 5:
            if self.x.dtype != torch.uint8:
                raise ValueError(f"ArrayDataset.x holds event frames [N, T, C, H, W]: they must "
                                 f"be uint8, got {self.x.dtype}")
        elif self.x.dim() != 4:
            raise ValueError(f"ArrayDataset.x must be [N, C, H, W] (or event frames "
                             f"[N, T, C, H, W]), got shape {tuple(self.x.shape)}")
        elif self.x.dtype != torch.float32:
            raise ValueError(f"ArrayDataset.x must be float32, got {self.x.dtype}")
        if self.y.dtype != torch.long or self.y.dim() != 1:
            raise ValueError(f"ArrayDataset.y must be a 1-D int64 tensor, got {self.y.dtype} "
                             f"shape {tuple(self.y.shape)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"ArrayDataset has {len(self.x)} images but {len(self.y)} labels")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1} (one per entry of "
                             f"classes), got {int(self.y.min())}..{int(self.y.max())}")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def subset(self, indices: np.ndarray | torch.Tensor | list[int]) -> ArrayDataset:
        """A new dataset holding the rows `indices` (in that order)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ArrayDataset(self.x[idx], self.y[idx], list(self.classes), self.name)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of one image (of one time bin for event frames)."""
        c, h, w = self.x.shape[-3:]
        return (int(c), int(h), int(w))

    @property
    def temporal(self) -> bool:
        """Whether `x` holds event frames `[N, T, C, H, W]`."""
        return self.x.dim() == 5

    @property
    def num_classes(self) -> int:
        """Number of classes (length of `classes`)."""
        return len(self.classes)


def from_uint8(images: np.ndarray, labels: np.ndarray, classes: list[str],
               name: str) -> ArrayDataset:
    """Build an ArrayDataset from uint8 images `[N, H, W]` (grey) or `[N, C, H, W]`."""
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0)
    y = torch.from_numpy(np.array(labels, dtype=np.int64))
    return ArrayDataset(x, y, classes, name)
