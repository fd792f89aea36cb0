"""Read a YAML file that must hold a mapping, with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: str | Path, what: str = "YAML file") -> dict[str, Any]:
    """The top-level mapping of the YAML file `path` (an empty file gives `{}`).

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that
    is not UTF-8 text, not valid YAML (with the line and column), or not a mapping at the top.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {exc.start} is "
                         f"{exc.object[exc.start:exc.start + 1]!r}); is it a binary file?"
                         ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{what} {path} is not valid YAML{where}: {problem}; check the "
                         "indentation and quoting there") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{what} {path} holds a {type(raw).__name__} at the top level; it "
                         "must be a mapping of keys to values (key: value)")
    return raw
