"""Stage 5, write: put generated source on disk atomically, or diff it against disk.

A write goes to a temporary file in the target's folder and is renamed over the
target, so a reader (or a crash) sees the old file or the whole new one, never
half of it, and no temporary file is left behind.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> bool:
    """Write `text` to `path`; returns False (and leaves the file alone) if unchanged."""
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return True


def diff(path: Path, text: str, shown_path: str) -> str:
    """Unified diff from what is on disk to `text`; '' when they match."""
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current == text:
        return ""
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{shown_path} (on disk)",
            tofile=f"{shown_path} (from spec)",
        )
    )
