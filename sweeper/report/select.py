"""Which records of a sweep folder the reports show: the latest run's, one per cell, and why not
the others.

A sweep folder can hold records that are not part of what the user last ran: a resume with a
changed override leaves the earlier records beside the new ones; a folder re-used for another sweep
keeps the earlier sweep's cells; copied records can measure the same cell twice. With the folder's
manifest (``sweep.json``, sweeper/manifest.py) the latest run's records are exactly those in its
jobs' folders whose ``config_sha256`` is the job's identity; every other record is left out and
said so, and jobs without a matching record are counted as missing. Without a manifest (folders
from before it, a folder of copied records, ``--all``), every record is shown, except that two
records of the same cell and config are never both shown: the newest wins, and the report says so.
Standard library only, and the config module for the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..config.job import config_identity
from ..manifest import Manifest, ManifestError, ManifestJob, read_manifest
from ..record import RECORD_NAME, Record, RecordError, read_record

__all__ = ["LeftOut", "Selection", "load_records", "select"]


@dataclass(frozen=True)
class LeftOut:
    """A readable record the reports do not show, and why."""

    record: Record
    reason: str


@dataclass
class Selection:
    """The records to show, the ones left out, and the latest run's jobs that have no record."""

    sweep_dir: Path
    records: List[Record] = field(default_factory=list)
    left_out: List[LeftOut] = field(default_factory=list)
    unreadable: List[str] = field(default_factory=list)
    manifest: Optional[Manifest] = None
    missing: List[ManifestJob] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # e.g. a broken sweep.json, ignored

    @property
    def total_cells(self) -> Optional[int]:
        """Cells of the latest run (from its manifest), or None when there is no manifest."""
        return None if self.manifest is None else self.manifest.total

    @property
    def missing_count(self) -> int:
        """Cells of the latest run with no record yet (jobs of batches not yet listed count)."""
        if self.manifest is None:
            return 0
        return len(self.missing) + self.manifest.total - len(self.manifest.jobs)


def load_records(sweep_dir: Path) -> Tuple[List[Record], List[str]]:
    """All readable records under ``sweep_dir`` and a message for every unreadable one."""
    records, unreadable = [], []
    for path in sorted(Path(sweep_dir).rglob(RECORD_NAME)):
        try:
            records.append(read_record(path))
        except RecordError as exc:
            unreadable.append(str(exc))
    return records, unreadable


def _key(record: Record) -> tuple:
    """What makes two records measurements of the same thing: the cell and the config identity
    (recomputed from the stored config, so records written by hand or by old versions agree)."""
    return record.cell, config_identity(record.config)


def _age(record: Record) -> tuple:
    """Sort key: later is newer. The finish time, else the start, else the file's mtime."""
    stamp = record.finished_utc or record.started_utc or record.environment.get("timestamp_utc")
    mtime = record.path.stat().st_mtime if record.path and record.path.exists() else 0.0
    return (stamp or "", mtime)


def _dedupe(records: Sequence[Record], root: Path) -> Tuple[List[Record], List[LeftOut]]:
    """One record per (cell, identity): the newest; the others left out, naming the kept one."""
    groups: Dict[tuple, List[Record]] = {}
    for record in records:
        groups.setdefault(_key(record), []).append(record)
    kept, left_out = [], []
    for record in records:
        group = groups[_key(record)]
        newest = max(group, key=_age)
        if record is newest:
            kept.append(record)
        else:
            why = f"an older measurement of the same cell and config as {_rel(newest, root)}"
            left_out.append(LeftOut(record, why))
    return kept, left_out


def _rel(record: Record, root: Path) -> str:
    if record.path is None:
        return "?"
    try:
        return str(record.path.relative_to(root))
    except ValueError:
        return str(record.path)


def select(sweep_dir: Path, use_manifest: bool = True) -> Selection:
    """The records of ``sweep_dir`` to report; see the module docstring for the rules."""
    sweep_dir = Path(sweep_dir)
    result = Selection(sweep_dir=sweep_dir)
    records, result.unreadable = load_records(sweep_dir)
    manifest = None
    if use_manifest:
        try:
            manifest = read_manifest(sweep_dir)
        except ManifestError as exc:
            result.notes.append(f"ignored a broken manifest, showing every record: {exc}")
    if manifest is None:
        result.records, result.left_out = _dedupe(records, sweep_dir)
        return result

    result.manifest = manifest
    by_path = {r.path.resolve(): r for r in records if r.path is not None}
    chosen: Dict[Path, Record] = {}
    stale_in_job_folder: Dict[Path, str] = {}
    for job in manifest.jobs:
        path = (sweep_dir / job.folder / RECORD_NAME).resolve()
        record = by_path.get(path)
        if record is not None and record.config_sha256 == job.identity:
            chosen[path] = record
        else:
            result.missing.append(job)
            if record is not None:
                stale_in_job_folder[path] = (
                    "measured another config than the latest run asks for in that folder; "
                    "the job has not run again yet"
                )
    kept, duplicates = _dedupe(list(chosen.values()), sweep_dir)
    result.records = kept
    result.left_out = duplicates
    for path, record in by_path.items():
        if path in chosen:
            continue
        reason = stale_in_job_folder.get(path) or (
            f"not part of the latest run of this sweep folder ({manifest.started_utc}, "
            f"run {manifest.run_id})"
        )
        result.left_out.append(LeftOut(record, reason))
    result.left_out.sort(key=lambda item: str(item.record.path))
    return result
