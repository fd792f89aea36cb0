"""Run directories: one writer at a time, and no silent overwrite of a finished run.

A run holds an exclusive `fcntl.flock` on `DIR/.spikefed.lock` while it runs (the kernel drops
it when the process ends, even on SIGKILL); the file records the holder's PID for the error a
second writer gets. A directory "holds a run" once it has `metrics.jsonl` or a checkpoint; a
fresh run there needs `overwrite=True` (CLI `--overwrite`), which removes the old run's files.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

from spikefed.report.sinks import TENSORBOARD_DIR
from spikefed.sim.checkpoint import CHECKPOINT_FILE, remove_stale_temporaries

LOCK_FILE = ".spikefed.lock"
RUN_FILES = ("metrics.jsonl", "summary.json", "curves.png", "partition.png", "config.yaml",
             "report.html")
CHECKPOINT_DIR = "checkpoint"
RUN_DIRS = (CHECKPOINT_DIR, TENSORBOARD_DIR)


class RunDirError(ValueError):
    """A run directory that is in use, or already holds a run (phrased for the user)."""


def holds_run(directory: Path) -> bool:
    """Whether `directory` holds (part of) a run: its metrics or its checkpoint."""
    return ((directory / "metrics.jsonl").exists()
            or (directory / CHECKPOINT_DIR / CHECKPOINT_FILE).exists())


def fresh_run_dir(base: Path) -> Path:
    """`base` if it holds no run, else the first free `base-2`, `base-3`, ..."""
    candidate, n = base, 1
    while holds_run(candidate) or (candidate / LOCK_FILE).exists() and _locked(candidate):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _locked(directory: Path) -> bool:
    try:
        with RunDirLock(directory):
            return False
    except RunDirError:
        return True


def clear_run(directory: Path) -> None:
    """Remove the files a previous run wrote (only those: other files in DIR are kept)."""
    for name in RUN_FILES:
        (directory / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        shutil.rmtree(directory / name, ignore_errors=True)


def check_fresh_start(directory: Path, overwrite: bool) -> None:
    """Refuse to start a new run over an existing one unless `overwrite`; clear it if so."""
    if not holds_run(directory):
        return
    if not overwrite:
        raise RunDirError(
            f"{directory} already holds a run (metrics.jsonl or checkpoint/); continue it with "
            f"`spikefed run --resume {directory}`, replace it with --overwrite, or choose "
            "another --out")
    clear_run(directory)


def clean_temporaries(directory: Path) -> list[Path]:
    """Delete leftover `.*.tmp-PID` files of killed writers in DIR and DIR/checkpoint."""
    return remove_stale_temporaries(directory) + remove_stale_temporaries(
        directory / CHECKPOINT_DIR)


class RunDirLock:
    """Context manager holding the exclusive lock of a run directory (created if needed)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunDirLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(
                f"run directory {self.directory} is in use by another spikefed process "
                f"(PID {holder}); wait for it to finish or stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
