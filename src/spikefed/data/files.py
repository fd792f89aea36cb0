"""File helpers for dataset readers: data-root resolution, checksums, gzip, cache directory."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

DATA_ENV = "SPIKEFED_DATA"
CACHE_ENV = "SPIKEFED_CACHE"


def resolve_root(root: str | Path | None, expected: str) -> Path:
    """Return the data root: `root`, else `$SPIKEFED_DATA`, else raise naming what is expected."""
    if root is None:
        env = os.environ.get(DATA_ENV)
        if not env:
            raise FileNotFoundError(
                f"no data root given: pass root=... (CLI: --data-root DIR) or set {DATA_ENV}=DIR; "
                f"{expected}"
            )
        root = env
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data root {path} is not a directory; {expected}")
    return path


def candidate_dirs(root: Path, folders: Sequence[str]) -> list[Path]:
    """`<root>/<folder>` for each known folder name that exists, then `<root>` itself."""
    return [root / f for f in folders if (root / f).is_dir()] + [root]


def find_file(dirs: Iterable[Path], name: str, gz: bool = True) -> Path | None:
    """First `name` (or `name.gz` when `gz`) found in `dirs`, raw preferred."""
    for d in dirs:
        for candidate in (d / name, d / f"{name}.gz") if gz else (d / name,):
            if candidate.is_file():
                return candidate
    return None


def read_bytes(path: Path) -> bytes:
    """File contents, transparently gunzipped when the name ends in `.gz`."""
    if path.suffix == ".gz":
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as err:
            raise ValueError(f"{path} is not a valid gzip file ({err}); replace it with a fresh "
                             f"copy") from err
    return path.read_bytes()


def md5(data: bytes) -> str:
    """Hex MD5 of `data`."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def cache_dir() -> Path:
    """Cache folder: `$SPIKEFED_CACHE`, else `~/.cache/spikefed`; created on demand."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spikefed").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
