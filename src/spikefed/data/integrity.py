"""SHA-256 checks of the data archives spikefed documents, verified once and remembered.

`KNOWN_ARCHIVES` maps an archive's file name to the size and SHA-256 of the copy documented in
docs/data.md. `verify_archive` checks a file against that table before it is decoded: a wrong
size fails at once, a wrong hash names both digests. A verified file leaves a small stamp
(path, size, mtime, hash) in the cache folder, so the next run does not hash a 52 MB zip again
unless the file's size or modification time changed. Archives not in the table are not
hashed (their readers still check structure). Pass `known=` to check against another table.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .files import cache_dir


@dataclass(frozen=True)
class ArchiveDigest:
    """The documented size (bytes) and SHA-256 of one archive."""

    size: int
    sha256: str


KNOWN_ARCHIVES: dict[str, ArchiveDigest] = {
    "cifar10_jpeg.zip": ArchiveDigest(
        53_067_488, "a6578adbfff501264da63a9907aa61d081a11129107c6bfd922bad8e6e64c5a1"),
    "NMNISTsmall.tar.gz": ArchiveDigest(
        18_272_865, "c911dd082d93bac0765c5bd9998bbee1b7a4f29c52f04af97b91afc164c8a87c"),
    "dvs_gesture_10.tar.gz": ArchiveDigest(
        4_811_437, "44f143f2ed1e96656ee51313e95daa04b06c98772a50e9b5ec0c568a8233c124"),
}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "verified" / f"{path.name}-{key}.json"


def _stamp(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def verify_archive(path: str | Path, known: Mapping[str, ArchiveDigest] | None = None) -> bool:
    """Check `path` against the documented SHA-256 of its file name.

    Returns True when the file is in the table and matches (now or at an earlier check of the
    same size and mtime), False when its name is not in the table. Raises ValueError, naming
    the file, the digests and the fix, when it does not match.
    """
    path = Path(path)
    expected = (KNOWN_ARCHIVES if known is None else known).get(path.name)
    if expected is None:
        return False
    size = path.stat().st_size
    if size != expected.size:
        raise ValueError(f"{path} is {size} bytes, the documented archive is {expected.size} "
                         "bytes; it is truncated, damaged or another version: replace it with "
                         "the copy listed in docs/data.md")
    stamp_file, stamp = _stamp_path(path), _stamp(path)
    try:
        if json.loads(stamp_file.read_text()) == {**stamp, "sha256": expected.sha256}:
            return True
    except (OSError, ValueError):
        pass  # no stamp yet, or an unreadable one: hash the file
    actual = sha256_file(path)
    if actual != expected.sha256:
        raise ValueError(f"{path} has SHA-256 {actual}, the documented archive has "
                         f"{expected.sha256}; it is damaged or another version: replace it with "
                         "the copy listed in docs/data.md")
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp_file.with_name(f".{stamp_file.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({**stamp, "sha256": actual}))
    os.replace(tmp, stamp_file)
    return True
