"""Load tensor files written by `torch.save` without ever running code from them.

`torch.load(..., weights_only=True)` unpickles only tensors, containers and plain numbers; a
pickle that names any other Python object (a `__reduce__` payload calling `os.system`, say) is
refused before anything runs. Every failure becomes a `ValueError` that names the file, so the
CLI reports it as bad input (exit 2) instead of a traceback.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch


class UnsafeFileError(ValueError):
    """The file holds Python objects other than tensors: loading it could run code."""


def load_tensor_file(path: str | Path, what: str = "tensor file") -> Any:
    """The object saved in `path` (tensors, dicts, lists, numbers), loaded onto the CPU.

    Raises FileNotFoundError when `path` is missing, `UnsafeFileError` when it holds other
    Python objects, and ValueError for anything else that is not a readable `torch.save` file
    (text, random bytes, an empty or truncated file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty; expected a file written by torch.save")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notes from torch
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        text = str(exc)
        unsafe = re.search(r"GLOBAL ([\w.]+)", text)
        if unsafe:
            raise UnsafeFileError(
                f"refused to load {what} {path}: it holds the Python object "
                f"'{unsafe.group(1)}', not only tensors, and loading it could run code. "
                "spikefed loads tensor files with torch.load(weights_only=True); save plain "
                "state_dicts (torch.save(model.state_dict(), path))") from None
        raise ValueError(
            f"{what} {path} is not a readable torch.save file ({type(exc).__name__}: "
            f"{_gist(text)}); pass a state_dict saved with torch.save or a run checkpoint"
        ) from None


_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _gist(message: str) -> str:
    """The informative line of a torch.load error (its weights_only preamble dropped)."""
    lines = [ln.strip() for ln in message.splitlines()
             if ln.strip() and not ln.strip().startswith(_BOILERPLATE)]
    return (lines[0] if lines else "unreadable")[:200]
