"""Verified, atomic checkpoints.

`checkpoint/state.pt` is written to a temporary file in the same folder, fsynced and renamed, so
a reader sees the old or the new file, never a torn one. Beside it, `state.pt.sha256.json`
records the SHA-256 and size of the state bytes. It is replaced (atomically) *before* the state
file and also lists the state file it replaces, so whichever of the two a crash leaves behind
still verifies. Loading checks the checksum first and then unpickles with
`torch.load(weights_only=True)`: only tensors and plain containers/numbers/strings load, never
code.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from spikefed.rounds.files import TMP_MARKER, atomic_write_bytes

CHECKPOINT_FILE = "state.pt"
CHECKSUM_FILE = "state.pt.sha256.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged or not one spikefed wrote (phrased for the user)."""


class StateWriteError(OSError):
    """Writing run state failed (disk full, I/O error); the last good checkpoint is intact."""


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete `.NAME.tmp-PID` files that killed writers left in `directory`; return them.

    Call only while holding the run directory's lock (no other writer can be active).
    """
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and TMP_MARKER in p.name]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _read_checksums(directory: Path) -> dict[str, Any] | None:
    path = directory / CHECKSUM_FILE
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Save `state` (tensors, dicts, lists, numbers, strings) to `directory/state.pt`, verified.

    Raises `StateWriteError` when the disk is full or another I/O error occurs; the previous
    checkpoint then still loads and verifies.
    """
    directory = Path(directory)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = directory / CHECKPOINT_FILE
    try:
        on_disk = _digest(path.read_bytes()) if path.is_file() else None
        verified = on_disk is not None and on_disk["sha256"] in _accepted(
            _read_checksums(directory))
        previous = on_disk if verified else None  # never vouch for a damaged file
        manifest = {"file": CHECKPOINT_FILE, **_digest(data), "round": state.get("round"),
                    "previous": previous}
        atomic_write_bytes(directory / CHECKSUM_FILE, (json.dumps(manifest) + "\n").encode())
        atomic_write_bytes(path, data)
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise StateWriteError(
            exc.errno, f"could not write the checkpoint in {directory}: {reason}; the last good "
            "checkpoint is intact: free space (or fix the file system) and continue with "
            f"`spikefed run --resume {directory.parent}`") from exc
    return path


def _accepted(checksums: dict[str, Any] | None) -> set[str]:
    """The SHA-256 digests a checksum file vouches for (the current and the replaced state)."""
    if checksums is None:
        return set()
    entries = [checksums, checksums.get("previous")]
    return {e["sha256"] for e in entries if isinstance(e, dict) and isinstance(e.get("sha256"),
                                                                                 str)}


def _verify(path: Path, data: bytes) -> None:
    checksums = _read_checksums(path.parent)
    hint = ("restart the run with `spikefed run CONFIG --out DIR --overwrite` (or restore the "
            "checkpoint folder from a backup)")
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); {hint}")
    if checksums is None:
        raise CheckpointError(f"checkpoint {path} has no readable checksum file "
                              f"{path.parent / CHECKSUM_FILE}, so it cannot be verified; {hint}")
    got = _digest(data)
    if got["sha256"] not in _accepted(checksums):
        expected = checksums.get("bytes")
        what = (f"truncated or damaged ({got['bytes']} of {expected} bytes, and its SHA-256 "
                "does not match the checksum file)"
                if isinstance(expected, int) and got["bytes"] < expected else
                "damaged (its SHA-256 does not match the checksum file)")
        raise CheckpointError(f"checkpoint {path} is {what}; {hint}")


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Load and verify `directory/state.pt` (a run directory's `checkpoint/` folder).

    Raises `CheckpointError` (a ValueError naming the file and what to do) when the file is
    missing, fails its checksum, or holds anything but tensors and plain Python data.
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; was the run started with this --out?")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    _verify(path, data)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load checkpoint {path}: it holds Python objects other than tensors and "
            f"plain data, which could run code ({str(exc).splitlines()[0]}); it was not written "
            "by spikefed: delete it and restart the run with --overwrite") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                              "restart the run with --overwrite") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a "
                              "spikefed state; restart the run with --overwrite")
    return state
