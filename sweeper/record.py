"""The record of one cell: a self-describing JSON file, written atomically.

Layout (``SCHEMA_VERSION`` 1)::

    schema_version, kind="sweeper.cell"
    cell: {model, framework, device, batch_size, sequence_length}
    status: ok | skipped | error | oom | timeout      error: text or null
    config: the resolved config     config_sha256: identity used to resume
    overrides, sweep_index, hydra_choices
    environment: the old tool's keys + more (env.py)
    started_utc, finished_utc, overhead: {job_wall_s, per mode: worker phases}
    results: {inference|training: {status, error, time: {...stats, samples_s},
              memory: {peak_rss_mib, baseline_rss_mib, peak_increase_mib, ...}, framework_runtime}}

Standard library only: the collector reads records without any framework.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping

__all__ = [
    "FAILED",
    "RECORD_NAME",
    "SCHEMA_VERSION",
    "STATUSES",
    "RecordError",
    "read_record",
    "write_json_atomic",
    "write_text_atomic",
]

SCHEMA_VERSION = 1
KIND = "sweeper.cell"
RECORD_NAME = "record.json"
STATUSES = ("ok", "skipped", "error", "oom", "timeout")
FAILED = ("error", "oom", "timeout")  # statuses that make the command exit non-zero
_REQUIRED = ("schema_version", "kind", "cell", "status", "config", "environment", "results")
_CELL_KEYS = ("model", "framework", "device", "batch_size", "sequence_length")


class RecordError(ValueError):
    """A file that is not a readable record of this schema; the message names the file."""


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (as is: no newline translation) through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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


def read_record(path: Path) -> Dict[str, Any]:
    """Load and check one record; RecordError says what is wrong with which file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc})") from exc
    if not text.strip():
        raise RecordError(f"{path}: empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON, truncated? ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise RecordError(f"{path}: not a sweeper cell record (no \"kind\": \"{KIND}\")")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(
            f"{path}: schema_version={data.get('schema_version')}, this sweeper reads "
            f"{SCHEMA_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    missing += [f"cell.{k}" for k in _CELL_KEYS if k not in data.get("cell", {})]
    if missing:
        raise RecordError(f"{path}: missing {', '.join(missing)}")
    if data["status"] not in STATUSES:
        raise RecordError(f"{path}: unknown status {data['status']!r}")
    return data
