"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "state.pt"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Save `state` (tensors, dicts, numbers) atomically to `directory/state.pt`."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = Path(directory) / CHECKPOINT_FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Load the checkpoint of a run directory's `checkpoint/` folder."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; was the run started with this --out?")
    return torch.load(path, map_location="cpu", weights_only=False)
