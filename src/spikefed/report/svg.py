"""Matplotlib figures as inline SVG or base64 PNG, for self-contained HTML pages."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def figure_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element (XML prologue dropped; text kept as text); closes it."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def png_data_uri(path: str | Path) -> str:
    """A ``data:image/png;base64,...`` URI holding the PNG file at ``path``."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def new_figure(width: float = 6.4, height: float = 3.4) -> tuple[Figure, plt.Axes]:
    """A figure with one grid-lined axes."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax
