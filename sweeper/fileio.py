"""Files written whole or not at all, readable by the people a sweep folder is shared with.

A reader (``collect`` on a cluster's shared file system, a resumed sweep) sees the old file or the
new one, never half of one. Files get the usual permissions (0666 less the umask: 0644 under the
default umask), not the 0600 that ``mkstemp`` leaves, so a colleague's ``collect`` can read them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically. NaN and infinity are refused (not JSON)."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (as is: no newline translation) through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
