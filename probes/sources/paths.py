"""Dotted paths into decoded JSON: `data.items.0.code` split once at config time, read per record.

Paths are split when a source is configured, so reading one per record is a loop over a tuple.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["Path", "get_path", "split_path"]

# A pre-split dotted path: string keys for objects, ints for list positions (`items.0.code`).
Path = tuple[str | int, ...]

_MISSING: Final = object()


def split_path(dotted: str) -> Path:
    """`data.items.0.code` -> ("data", "items", 0, "code"); an empty path means the document itself."""
    if not dotted:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def get_path(document: Any, path: Path, default: Any = None) -> Any:
    """The value at `path`, or `default` when any step is missing or of the wrong kind."""
    node = document
    for part in path:
        if isinstance(part, int):
            if isinstance(node, list) and -len(node) <= part < len(node):
                node = node[part]
                continue
            # A numeric key of an object ("0": ...) is still a key.
            if isinstance(node, dict):
                node = node.get(str(part), _MISSING)
                if node is _MISSING:
                    return default
                continue
            return default
        if not isinstance(node, dict):
            return default
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return default
    return node
