"""Read members of tar and zip archives with errors that name the archive and the member.

A damaged archive otherwise surfaces as a bare `zlib.error`, `EOFError` or `BadZipFile`
traceback naming neither. Tar members are also checked against the size in their header.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

#: What reading a damaged archive raises (gzip/deflate stream errors, truncation, bad CRCs).
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError)


class DamagedArchiveError(ValueError):
    """An archive (or one of its members) cannot be read; the message names both."""


def damaged(archive: Path, member: str | None, why: object) -> DamagedArchiveError:
    """The error for a damaged `archive` (and `member`, when known)."""
    where = f"{archive}" + (f", member {member}" if member else "")
    return DamagedArchiveError(f"{where}: {why}; the archive is damaged or truncated: replace "
                               "it with a fresh copy")


def iter_tar_members(archive: Path, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Yield `(member name, bytes)` for the regular files of a (gzipped) tar `keep` accepts.

    One sequential pass (a gzip stream cannot seek). Each member's bytes must have the size
    its header gives.
    """
    member_name: str | None = None
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                member_name = member.name
                if not member.isfile() or not keep(member.name):
                    continue
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise damaged(archive, member.name, f"{len(data)} bytes read, its header "
                                  f"says {member.size}")
                yield member.name, data
                member_name = None
    except ARCHIVE_ERRORS as err:
        raise damaged(archive, member_name, f"{type(err).__name__}: {err}") from None


def read_zip_member(zf: zipfile.ZipFile, archive: Path, member: str) -> bytes:
    """The bytes of `member` (CRC-checked by zipfile); a damaged one names archive and member."""
    try:
        return zf.read(member)
    except ARCHIVE_ERRORS as err:
        raise damaged(archive, member, f"{type(err).__name__}: {err}") from None


def open_zip(archive: Path) -> zipfile.ZipFile:
    """Open a zip archive; a file that is not one (or is truncated) names the archive."""
    try:
        return zipfile.ZipFile(archive)
    except ARCHIVE_ERRORS as err:
        raise damaged(archive, None, f"not a readable zip ({type(err).__name__}: {err})") from None
