"""Plot of how labels are spread over clients."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .partition import label_distribution


def plot_partition(labels: np.ndarray, parts: list[np.ndarray], path: str | Path,
                   classes: Sequence[str] | None = None) -> Path:
    """Save a stacked bar chart of label counts per client to `path` (format from suffix)."""
    import matplotlib.pyplot as plt

    from spikefed.report.figures import save_png

    labels = np.asarray(labels)
    num_classes = len(classes) if classes is not None else int(labels.max()) + 1
    counts = label_distribution(labels, parts, num_classes)
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "turbo")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(parts) + 2), 4))
    bottom = np.zeros(len(parts))
    clients = np.arange(len(parts))
    for c in range(num_classes):
        colour = cmap(c / max(num_classes - 1, 1)) if num_classes > 20 else cmap(c)
        name = classes[c] if classes is not None else str(c)
        ax.bar(clients, counts[:, c], bottom=bottom, color=colour, label=name, width=0.85)
        bottom += counts[:, c]
    ax.set_xlabel("client")
    ax.set_ylabel("samples")
    ax.set_title(f"label distribution over {len(parts)} clients")
    if num_classes <= 20:
        ax.legend(title="class", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize="small")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_png(fig, path)
