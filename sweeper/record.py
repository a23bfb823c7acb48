"""The record of one cell: the typed contract between the processes that measure and every report.

The runner (``sweeper.run``) writes one :class:`Record` per cell as ``record.json``; the worker
writes one :class:`ModeResult` per mode; the collector, the tables and every later report read
these types, never the JSON keys. Layout (``SCHEMA_VERSION`` 1)::

    schema_version, kind="sweeper.cell"
    cell: {model, framework, device, batch_size, sequence_length}
    status: ok | skipped | error | oom | timeout      error: text or null
    config: the resolved config     config_sha256: identity used to resume
    overrides, sweep_index, hydra_choices, started_utc, finished_utc
    environment: the old tool's keys + more (sweeper.measure.env)
    overhead: {job_wall_s, warmup_and_timed_s, overhead_s, workers, per_mode, ...}
    results: {inference|training: {status, error, phase, phases_s, framework_runtime,
              model_class, model_config, model_parameters,
              time: {...statistics, noise, samples_s}, memory: {...}, worker_*}}

Keys this version does not know are kept (``extra``) and written back unchanged, so a record
read and rewritten loses nothing. Standard library only: reports read records without any
framework.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from .fileio import write_json_atomic

__all__ = [
    "FAILED",
    "KIND",
    "MODES",
    "RECORD_NAME",
    "SCHEMA_VERSION",
    "Cell",
    "MemoryResult",
    "Mode",
    "ModeResult",
    "Noise",
    "Overhead",
    "Record",
    "RecordError",
    "Status",
    "TimeResult",
    "read_record",
]

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
KIND = "sweeper.cell"
RECORD_NAME = "record.json"


class RecordError(ValueError):
    """A file that is not a readable record of this schema; the message names the file."""


class Status(str, Enum):
    """A cell's or a mode's outcome, in order of severity: a cell has its worst mode's status."""

    ok = "ok"
    skipped = "skipped"  # cannot run as configured (seq beyond the positions): nothing was built
    error = "error"
    oom = "oom"
    timeout = "timeout"

    @property
    def severity(self) -> int:
        return list(Status).index(self)

    @property
    def failed(self) -> bool:
        """Whether this status makes the command exit 1."""
        return self in FAILED


FAILED = frozenset({Status.error, Status.oom, Status.timeout})


class Mode(str, Enum):
    """What one worker measures: a forward pass without gradients, or forward + backward."""

    inference = "inference"
    training = "training"


MODES = tuple(Mode)


def _split(cls: type, data: Mapping[str, Any]) -> tuple:
    """(the values of ``cls``'s fields, every other key) of a JSON object."""
    if not isinstance(data, Mapping):
        raise TypeError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in fields(cls)} - {"extra", "path"}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return known, extra


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _to_dict(obj: Any, omit_none: tuple = ()) -> Dict[str, Any]:
    """Fields in declaration order (``omit_none`` ones only when set), then the kept extras."""
    out: Dict[str, Any] = {}
    for f in fields(obj):
        if f.name in ("extra", "path"):
            continue
        value = getattr(obj, f.name)
        if value is None and f.name in omit_none:
            continue
        if isinstance(value, dict):
            value = {k: _plain(v) for k, v in value.items()}
        out[f.name] = _plain(value)
    out.update(obj.extra)
    return out


@dataclass(frozen=True)
class Cell:
    """The coordinates of one cell in the tables."""

    model: str  # label, e.g. bert-base or bert-base[hidden_size=384]
    framework: str  # pt | tf
    device: str  # cpu | cuda
    batch_size: int
    sequence_length: int

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Noise:
    verdict: str  # "ok" or "noisy"
    reasons: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"verdict": self.verdict, "reasons": list(self.reasons)}


@dataclass
class TimeResult:
    """Seconds per call of one mode: statistics derived from ``samples_s`` (measure.stats)."""

    median_s: float
    min_s: Optional[float] = None
    mean_s: Optional[float] = None
    stdev_s: Optional[float] = None
    iqr_s: Optional[float] = None
    p90_s: Optional[float] = None
    p99_s: Optional[float] = None
    ci95_low_s: Optional[float] = None
    ci95_high_s: Optional[float] = None
    ci95_halfwidth_pct: Optional[float] = None
    iqr_pct: Optional[float] = None
    first_call_s: Optional[float] = None
    warmup_calls: Optional[int] = None
    timed_calls: Optional[int] = None
    stop_reason: Optional[str] = None
    target_ci_pct: Optional[float] = None
    noise: Noise = field(default_factory=lambda: Noise(verdict="ok"))
    samples_s: List[float] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def noisy(self) -> bool:
        return self.noise.verdict == "noisy"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimeResult:
        known, extra = _split(cls, data)
        noise = known.get("noise") or {}
        known["noise"] = Noise(verdict=noise.get("verdict", "ok"), reasons=noise.get("reasons", []))
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        return _to_dict(self)


# GPU keys appear only on a GPU; absent keys stay absent when a record is written back.
_GPU_MEMORY_KEYS = (
    "torch_max_allocated_mib",
    "torch_max_reserved_mib",
    "tf_peak_mib",
    "nvml_process_used_mib",
    "nvml_device_used_mib",
)


@dataclass
class MemoryResult:
    """Peak memory of one mode; ``headline_mib`` is what the tables show."""

    headline_mib: Optional[float] = None
    headline_source: Optional[str] = None
    first_call_peak_rss_mib: Optional[float] = None
    peak_rss_mib: Optional[float] = None
    baseline_rss_mib: Optional[float] = None
    peak_increase_mib: Optional[float] = None
    method: Optional[str] = None
    calls_covered: Optional[str] = None
    baseline_parts: Optional[Dict[str, Optional[float]]] = None
    end_parts: Optional[Dict[str, Optional[float]]] = None
    torch_max_allocated_mib: Optional[float] = None
    torch_max_reserved_mib: Optional[float] = None
    tf_peak_mib: Optional[float] = None
    nvml_process_used_mib: Optional[float] = None
    nvml_device_used_mib: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryResult:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        return _to_dict(self, omit_none=_GPU_MEMORY_KEYS)


@dataclass
class ModeResult:
    """What one worker measured for one mode, and how the worker ended."""

    mode: Mode
    status: Optional[Status] = None  # None while the worker runs
    error: Optional[str] = None
    phase: str = "start"  # how far the worker got: import, build, measure, done
    phases_s: Dict[str, float] = field(default_factory=dict)
    framework_runtime: Optional[Dict[str, Any]] = None
    model_class: Optional[str] = None
    # The transformers config the model was built with (to_dict() plus hidden_size and the other
    # canonical names, whatever the family calls them), and its parameter count.
    model_config: Optional[Dict[str, Any]] = None
    model_parameters: Optional[int] = None
    build_peak_rss_mib: Optional[float] = None
    address_space_limit_mib: Optional[float] = None
    time: Optional[TimeResult] = None
    memory: Optional[MemoryResult] = None
    worker_wall_s: Optional[float] = None
    worker_returncode: Optional[int] = None
    worker_log: Optional[str] = None
    worker_start: Optional[str] = None  # fork | spawn
    zygote: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.ok

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModeResult:
        known, extra = _split(cls, data)
        known["mode"] = Mode(known["mode"])
        status = known.get("status")
        known["status"] = None if status in (None, "running") else Status(status)
        if known.get("time") is not None:
            known["time"] = TimeResult.from_dict(known["time"])
        if known.get("memory") is not None:
            known["memory"] = MemoryResult.from_dict(known["memory"])
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        return _to_dict(
            self,
            omit_none=(
                "framework_runtime",
                "model_class",
                "model_config",
                "model_parameters",
                "build_peak_rss_mib",
                "address_space_limit_mib",
                "time",
                "memory",
                "worker_wall_s",
                "worker_returncode",
                "worker_log",
                "worker_start",
                "zygote",
            ),
        )


@dataclass
class Overhead:
    """Where a cell's wall time went: measuring, and everything else (the sweep's own cost)."""

    job_wall_s: float
    warmup_and_timed_s: float
    overhead_s: float
    workers: int
    per_mode: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    hydra_process_cpu_s: Optional[float] = None  # CPU the Hydra process used for this cell
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Overhead:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        return _to_dict(self)


_REQUIRED = ("schema_version", "kind", "cell", "status", "config", "environment", "results")


@dataclass
class Record:
    """One cell: its coordinates, config, environment, status and per-mode results."""

    cell: Cell
    status: Status
    config: Dict[str, Any]
    environment: Dict[str, Any] = field(default_factory=dict)
    results: Dict[Mode, ModeResult] = field(default_factory=dict)
    error: Optional[str] = None
    config_sha256: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    sweep_index: Optional[int] = None
    hydra_choices: Dict[str, Any] = field(default_factory=dict)
    started_utc: Optional[str] = None
    finished_utc: Optional[str] = None
    overhead: Optional[Overhead] = None
    schema_version: int = SCHEMA_VERSION
    kind: str = KIND
    extra: Dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = field(default=None, compare=False)  # the file it was read from

    # -- what the cell asked for and what it got ------------------------------------------------

    @property
    def modes(self) -> List[Mode]:
        """The modes the cell's config asked for, in the old tool's order."""
        return [m for m in MODES if self.config.get(m.value)]

    def wants(self, mode: Mode, measurement: str) -> bool:
        """Whether the cell asked for ``measurement`` ("time" or "memory") of ``mode``."""
        flag = "speed" if measurement == "time" else "memory"
        return bool(self.config.get(mode.value)) and bool(self.config.get(flag))

    def result(self, mode: Mode) -> Optional[ModeResult]:
        return self.results.get(Mode(mode))

    def time(self, mode: Mode) -> Optional[TimeResult]:
        """The timing of ``mode`` when that mode succeeded, else None."""
        result = self.result(mode)
        return result.time if result is not None and result.ok else None

    def memory(self, mode: Mode) -> Optional[MemoryResult]:
        """The memory of ``mode`` when that mode succeeded, else None."""
        result = self.result(mode)
        return result.memory if result is not None and result.ok else None

    # -- JSON -----------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Optional[Path] = None) -> Record:
        known, extra = _split(cls, data)
        known["cell"] = Cell(**{f.name: known["cell"][f.name] for f in fields(Cell)})
        known["status"] = Status(known["status"])
        known["results"] = {
            Mode(mode): ModeResult.from_dict({"mode": mode, **result})
            for mode, result in (known.get("results") or {}).items()
        }
        if known.get("overhead") is not None:
            known["overhead"] = Overhead.from_dict(known["overhead"])
        return cls(**known, extra=extra, path=path)

    def to_dict(self) -> Dict[str, Any]:
        data = _to_dict(self)
        data["results"] = {Mode(k).value: v.to_dict() for k, v in self.results.items()}
        order = (
            "schema_version",
            "kind",
            "cell",
            "status",
            "error",
            "config_sha256",
            "config",
            "overrides",
            "sweep_index",
            "hydra_choices",
            "started_utc",
            "finished_utc",
            "environment",
            "overhead",
            "results",
        )
        return {**{k: data.pop(k) for k in order}, **data}

    def write(self, path: Path) -> None:
        """Write atomically: readers see the old file or the new one, never half of one."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> Record:
        return read_record(path)


def read_record(path: Path) -> Record:
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
        raise RecordError(f'{path}: not a sweeper cell record (no "kind": "{KIND}")')
    if data.get("schema_version") not in SUPPORTED_VERSIONS:
        raise RecordError(
            f"{path}: schema_version={data.get('schema_version')}, this sweeper reads "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    cell = data.get("cell") if isinstance(data.get("cell"), dict) else {}
    missing += [f"cell.{f.name}" for f in fields(Cell) if f.name not in cell]
    if missing:
        raise RecordError(f"{path}: missing {', '.join(missing)}")
    statuses = [s.value for s in Status]
    if data["status"] not in statuses:
        raise RecordError(f"{path}: unknown status {data['status']!r}")
    try:
        return Record.from_dict(data, path=path)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{path}: malformed record ({type(exc).__name__}: {exc})") from exc
