"""The sweep manifest (``sweep.json``): which jobs make up the latest run of a sweep folder.

The Hydra process writes it before the first job runs: the validating sweeper for a multirun (it
has composed every job by then), the end-of-run callback's ``on_run_start`` for a single run. A
resumed sweep, or another sweep started in the same folder, rewrites it. The collector reads it to
tell the records of the latest run from stale ones (an earlier run with other overrides, another
sweep that used the folder) and to count the cells that have no record yet.

Layout (``kind`` "sweeper.sweep", ``schema_version`` 1)::

    run_id, started_utc, sweeper_version, sweep_dir, command (what resumes the sweep),
    overrides (the command line's), total_jobs,
    jobs: [{folder (relative to the sweep folder), overrides, identity, cell}, ...]

``identity`` is the job's config identity (sweeper.config.job.config_identity), which the record
it writes carries as ``config_sha256``. ``jobs`` is a plain list, not an order: jobs may run in
any order, and a job's record is found by its folder and identity alone. Standard library only.
"""

from __future__ import annotations

import datetime
import json
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from . import __version__
from .fileio import write_json_atomic
from .record import Cell

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "ManifestError",
    "ManifestJob",
    "new_manifest",
    "read_manifest",
    "resume_command",
    "write_from_hydra",
]

MANIFEST_NAME = "sweep.json"
KIND = "sweeper.sweep"
SCHEMA_VERSION = 1


class ManifestError(ValueError):
    """A ``sweep.json`` that cannot be read; the message names the file."""


@dataclass(frozen=True)
class ManifestJob:
    """One job of a sweep: where its record goes and which config it measures."""

    folder: str  # relative to the sweep folder; "." for a single run
    overrides: List[str]
    identity: str
    cell: Cell

    def to_dict(self) -> Dict[str, Any]:
        return {
            "folder": self.folder,
            "overrides": list(self.overrides),
            "identity": self.identity,
            "cell": self.cell.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ManifestJob:
        return cls(
            folder=data["folder"],
            overrides=list(data["overrides"]),
            identity=data["identity"],
            cell=Cell(**data["cell"]),
        )


@dataclass
class Manifest:
    """The latest run of a sweep folder."""

    run_id: str
    started_utc: str
    command: str
    overrides: List[str] = field(default_factory=list)
    jobs: List[ManifestJob] = field(default_factory=list)
    total_jobs: Optional[int] = None  # jobs of the whole sweep; len(jobs) unless batched
    sweep_dir: Optional[str] = None
    sweeper_version: str = __version__

    @property
    def total(self) -> int:
        return len(self.jobs) if self.total_jobs is None else max(self.total_jobs, len(self.jobs))

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "run_id": self.run_id,
            "started_utc": self.started_utc,
            "sweeper_version": self.sweeper_version,
            "sweep_dir": self.sweep_dir,
            "command": self.command,
            "overrides": list(self.overrides),
            "total_jobs": self.total,
            "jobs": [job.to_dict() for job in self.jobs],
        }

    def write(self, sweep_dir: Path) -> Path:
        """Write ``sweep_dir/sweep.json`` atomically (a whole file or the previous one)."""
        path = Path(sweep_dir) / MANIFEST_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_dict())
        return path


def new_manifest(
    sweep_dir: Path, command: str, overrides: Sequence[str], jobs: Iterable[ManifestJob]
) -> Manifest:
    """A manifest for a run starting now, with a fresh run id."""
    jobs = list(jobs)
    return Manifest(
        run_id=uuid.uuid4().hex[:12],
        started_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command,
        overrides=list(overrides),
        jobs=jobs,
        total_jobs=len(jobs),
        sweep_dir=str(Path(sweep_dir).resolve()),
    )


def read_manifest(sweep_dir: Path) -> Optional[Manifest]:
    """The manifest of ``sweep_dir``, None if it has none; ManifestError if it is broken."""
    path = Path(sweep_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ManifestError(f'{path}: not a sweeper manifest (no "kind": "{KIND}")')
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: schema_version={data.get('schema_version')}, this sweeper reads "
            f"{SCHEMA_VERSION}"
        )
    try:
        return Manifest(
            run_id=data["run_id"],
            started_utc=data["started_utc"],
            command=data["command"],
            overrides=list(data.get("overrides") or []),
            jobs=[ManifestJob.from_dict(job) for job in data["jobs"]],
            total_jobs=data.get("total_jobs"),
            sweep_dir=data.get("sweep_dir"),
            sweeper_version=data.get("sweeper_version", ""),
        )
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from exc


# Hydra overrides that the resume command sets itself (the folder, -m) or that only echo -m.
_SET_BY_RESUME = ("hydra.sweep.dir=", "hydra.run.dir=", "hydra.mode=")


def resume_command(
    sweep_dir: Path,
    task_overrides: Sequence[str],
    hydra_overrides: Sequence[str] = (),
    config_dirs: Sequence[str] = (),
    config_name: Optional[str] = None,
    multirun: bool = True,
) -> str:
    """The command line that runs the same sweep again into ``sweep_dir`` (and so resumes it);
    for a single run (``multirun=False``), the same cell into the same ``hydra.run.dir``.

    Overrides come before ``-m``: Hydra's argparse takes them there or all after it.
    """
    parts = ["python", "-m", "sweeper"]
    for folder in config_dirs:
        parts += ["--config-dir", folder]
    if config_name and config_name != "config":
        parts += ["--config-name", config_name]
    parts += list(task_overrides)
    parts += [o for o in hydra_overrides if not o.startswith(_SET_BY_RESUME)]
    if multirun:
        parts += [f"hydra.sweep.dir={Path(sweep_dir).resolve()}", "-m"]
    else:
        parts.append(f"hydra.run.dir={Path(sweep_dir).resolve()}")
    return shlex.join(parts)


def write_from_hydra(
    config: Any, jobs: Iterable[tuple], sweep_dir: Path, total_jobs: int, multirun: bool = True
) -> Path:
    """Write the manifest of a run that Hydra is starting; return its path.

    ``config`` is the run's composed config with its ``hydra`` node (the master config of a
    multirun); ``jobs`` are (job folder, sweeper.config.job.Job) pairs; ``multirun=False`` for
    a single run (one job, its folder the run's). Only attribute access on ``config``: this
    module imports neither Hydra nor OmegaConf.
    """
    hydra = config.hydra
    command_line_dirs = [
        source.path
        for source in hydra.runtime.config_sources
        if source.provider == "command-line" and source.schema == "file"
    ]
    sweep_dir = Path(sweep_dir)
    task = list(hydra.overrides.task)
    entries = [
        ManifestJob(
            folder=_relative(Path(folder), sweep_dir),
            overrides=list(job.overrides),
            identity=job.identity,
            cell=job.cell,
        )
        for folder, job in jobs
    ]
    manifest = new_manifest(
        sweep_dir,
        resume_command(
            sweep_dir,
            task,
            list(hydra.overrides.hydra),
            command_line_dirs,
            hydra.job.config_name,
            multirun,
        ),
        task,
        entries,
    )
    manifest.total_jobs = max(total_jobs, len(entries))
    return manifest.write(sweep_dir)


def _relative(folder: Path, sweep_dir: Path) -> str:
    try:
        return str(folder.resolve().relative_to(sweep_dir.resolve()))
    except ValueError:
        return str(folder)
