"""Atomic file writes, shared by both engines, the checkpoint and the metrics log."""

from __future__ import annotations

import os
from pathlib import Path

#: the marker in a temporary file's name (`.<name>.tmp-<pid>`), so stale ones can be found
TMP_MARKER = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees the old or the new file, never a torn one.

    On any OSError (disk full, I/O error) the temporary file is removed, `path` is left as it
    was and the error is re-raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
