"""The record of one cell: the typed contract between the processes that measure and every report.

The runner (``sweeper.engine``) writes one :class:`Record` per cell as ``record.json``; the worker
writes one :class:`ModeResult` per mode; the collector, the tables and every later report read
these types, never the JSON keys. Layout (``SCHEMA_VERSION`` 1)::

    schema_version, kind="sweeper.cell"
    cell: {model, framework, device, batch_size, sequence_length}
    status: ok | skipped | error | killed | oom | timeout      error: text or null
    config: the resolved config     config_sha256: identity used to resume
    overrides, sweep_index, hydra_choices, started_utc, finished_utc
    environment: the old tool's keys + more (sweeper.measure.env)
    overhead: {job_wall_s, warmup_and_timed_s, overhead_s, workers, per_mode, ...}
    results: {inference|training: {status, error, phase, phases_s, framework_runtime,
              model_class, model_config, model_parameters, memory_limit,
              time: {...statistics, noise, samples_s}, memory: {...}, worker_*, build, rounds,
              started_utc, finished_utc, lock_wait_s, locks}}

Keys this version does not know are kept (``extra``) and written back unchanged, so a record
read and rewritten loses nothing. Standard library only: reports read records without any
framework.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .fileio import write_json_atomic

__all__ = [
    "FAILED",
    "KIND",
    "MODES",
    "PER_RUN_ENV_KEYS",
    "RECORD_NAME",
    "SCHEMA_VERSION",
    "Cell",
    "MemoryLimit",
    "MemoryResult",
    "MemorySource",
    "Mode",
    "ModeResult",
    "Noise",
    "Overhead",
    "Record",
    "RecordError",
    "Status",
    "TimeResult",
    "memory_marks",
    "read_record",
]

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
KIND = "sweeper.cell"
RECORD_NAME = "record.json"

# Environment keys that differ from one run to the next by nature (when it ran, the GPU's power
# state at that moment, which scheduler job or Ray task ran it): the collector does not compare
# them across the cells of a table; every other key (versions, hardware, host) must agree or it
# warns. sweeper.measure.env writes them.
PER_RUN_ENV_KEYS = (
    "date",
    "time",
    "timestamp_utc",
    "gpu_performance_state",
    "slurm_job_id",
    "slurm_array_job_id",
    "slurm_array_task_id",
    "submitit_job_id",
    "ray_job_id",
    "ray_node_id",
    "ray_task_id",
)


class RecordError(ValueError):
    """A file that is not a readable record of this schema; the message names the file."""


class Status(str, Enum):
    """A cell's or a mode's outcome, in order of severity: a cell has its worst mode's status."""

    ok = "ok"
    skipped = "skipped"  # cannot run as configured (seq beyond the positions): nothing was built
    error = "error"
    killed = "killed"  # the worker died of a signal, not the OOM killer's (the error names it)
    oom = "oom"
    timeout = "timeout"

    @property
    def severity(self) -> int:
        return list(Status).index(self)

    @property
    def failed(self) -> bool:
        """Whether this status makes the command exit 1."""
        return self in FAILED


FAILED = frozenset({Status.error, Status.killed, Status.oom, Status.timeout})


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
    checks: Optional[List[str]] = None  # the checks that flagged it: iqr, ci, rounds, drift, calls

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"verdict": self.verdict, "reasons": list(self.reasons)}
        if self.checks is not None:
            out["checks"] = list(self.checks)
        return out


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
    # With timing.rounds > 1: samples_s holds the rounds one after the other.
    rounds: Optional[int] = None
    round_sizes: Optional[List[int]] = None
    round_medians_s: Optional[List[float]] = None
    pooled_ci95_low_s: Optional[float] = None  # the CI of all samples as if one round
    pooled_ci95_high_s: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def noisy(self) -> bool:
        return self.noise.verdict == "noisy"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimeResult:
        known, extra = _split(cls, data)
        noise = known.get("noise") or {}
        known["noise"] = Noise(
            verdict=noise.get("verdict", "ok"),
            reasons=noise.get("reasons", []),
            checks=noise.get("checks"),
        )
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        return _to_dict(
            self,
            omit_none=(
                "rounds",
                "round_sizes",
                "round_medians_s",
                "pooled_ci95_low_s",
                "pooled_ci95_high_s",
            ),
        )


class MemorySource(str, Enum):
    """Where a ``MemoryResult.headline_mib`` comes from; each covers the timed calls
    (sweeper.measure.memory for the CPU, sweeper.measure.gpu for the GPU)."""

    peak_rss = "peak_rss"  # CPU: the kernel's high-water mark of resident memory (VmHWM)
    # GPU: what the worker process holds at its peak: CUDA context and everything outside the
    # framework's allocator, measured after the calls, plus the allocator's peak reservation.
    nvml_process = "nvml_process"  # the process's total from NVML's per-process figure
    nvml_device_delta = "nvml_device_delta"  # ... from the device's use minus its use before
    allocator_peak = "allocator_peak"  # the allocator's peak alone: no CUDA context

    @property
    def mark(self) -> str:
        """The letter a table puts after a figure when its sources differ."""
        return _SOURCE_MARKS[self]

    @property
    def note(self) -> str:
        """What the figure means, in one line under such a table."""
        return _SOURCE_NOTES[self]


_SOURCE_MARKS = {
    MemorySource.peak_rss: "r",
    MemorySource.nvml_process: "p",
    MemorySource.nvml_device_delta: "d",
    MemorySource.allocator_peak: "a",
}
_SOURCE_NOTES = {  # each fits the tables' 80 columns with its mark
    MemorySource.peak_rss: "peak resident memory (CPU)",
    MemorySource.nvml_process: "GPU: the worker's use per NVML's process list "
    "(CUDA context included)",
    MemorySource.nvml_device_delta: "GPU: device use minus device use before the worker "
    "(CUDA context included)",
    MemorySource.allocator_peak: "GPU: the framework allocator's peak alone (CUDA context not "
    "included)",
}
UNKNOWN_SOURCE_MARK = "?"


def memory_marks(sources: Sequence[Optional[str]]) -> Tuple[Dict[str, str], List[str]]:
    """(a mark per headline source, the notes that explain them) for one table's figures.

    Empty when all figures come from one source, so a table whose figures mean the same thing
    looks as it always did. ``None`` (a cell without a figure) is ignored; a source this version
    does not know (an older record) is marked ``?`` and named in its note.
    """
    present = sorted({s for s in sources if s is not None}, key=_source_order)
    if len(present) < 2:
        return {}, []
    marks, notes = {}, []
    for source in present:
        try:
            known = MemorySource(source)
        except ValueError:
            marks[source] = UNKNOWN_SOURCE_MARK
            notes.append(f"{UNKNOWN_SOURCE_MARK}: headline_source={source} (an older record)")
            continue
        marks[source] = known.mark
        notes.append(f"{known.mark}: {known.note}")
    return marks, notes


def _source_order(source: str) -> tuple:
    members = [m.value for m in MemorySource]
    return (members.index(source), "") if source in members else (len(members), source)


# GPU keys appear only on a GPU; absent keys stay absent when a record is written back.
_GPU_MEMORY_KEYS = (
    "torch_max_allocated_mib",
    "torch_allocated_at_reset_mib",
    "torch_max_reserved_mib",
    "torch_reserved_mib",
    "tf_peak_mib",
    "tf_current_at_reset_mib",
    "gpu_peak_increase_mib",
    "nvml_process_used_mib",
    "nvml_device_used_mib",
    "nvml_device_before_mib",
    "gpu_held_mib",
    "gpu_outside_allocator_mib",
    "gpu_note",
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
    # The anonymous memory the calls added at their peak (library code left out), and how far
    # it may be off: sweeper.measure.memory.anon_peak_increase
    peak_increase_anon_mib: Optional[float] = None
    peak_increase_anon_spread_mib: Optional[float] = None
    method: Optional[str] = None
    calls_covered: Optional[str] = None
    # Resident memory by kind (rss_anon_mib, rss_file_mib, rss_shmem_mib): model built and
    # nothing run; when the peak mark was reset, just before the calls; after the calls
    baseline_parts: Optional[Dict[str, Optional[float]]] = None
    reset_parts: Optional[Dict[str, Optional[float]]] = None
    end_parts: Optional[Dict[str, Optional[float]]] = None
    # GPU (sweeper.measure.gpu): the allocator's figures over the timed calls and after them
    torch_max_allocated_mib: Optional[float] = None
    torch_allocated_at_reset_mib: Optional[float] = None  # live tensors when the calls start
    torch_max_reserved_mib: Optional[float] = None
    torch_reserved_mib: Optional[float] = None  # reserved after the calls
    tf_peak_mib: Optional[float] = None
    tf_current_at_reset_mib: Optional[float] = None  # live tensors when the calls start
    # What the calls' tensors added at their peak (sweeper.measure.gpu.peak_increase_mib)
    gpu_peak_increase_mib: Optional[float] = None
    # NVML after the calls: the worker process's use, the device's, the device's before the worker
    nvml_process_used_mib: Optional[float] = None
    nvml_device_used_mib: Optional[float] = None
    nvml_device_before_mib: Optional[float] = None
    gpu_held_mib: Optional[float] = None  # what the process holds after the calls (per the source)
    gpu_outside_allocator_mib: Optional[float] = None  # CUDA context, kernels, library handles
    gpu_note: Optional[str] = None  # why a GPU source was not used
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryResult:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        return _to_dict(self, omit_none=_GPU_MEMORY_KEYS)


@dataclass
class MemoryLimit:
    """How ``memory_limit_mib`` was enforced on one worker (sweeper.measure.limits)."""

    allowance_mib: float  # memory_limit_mib: what the cell may add beyond its built model
    method: str  # "cgroup v2" | "cgroup v1" | "rss watchdog"
    baseline_rss_mib: Optional[float] = None  # resident memory when the limit began (model built)
    pid: Optional[int] = None  # the worker
    pid_start_ticks: Optional[int] = None  # its start time (/proc/PID/stat): not a reused pid
    cgroup: Optional[str] = None  # the worker's own memory cgroup (removed after it ended)
    no_cgroup: Optional[str] = None  # why the watchdog was used
    watch_field: Optional[str] = None  # watchdog: VmHWM, or VmRSS where the mark cannot be reset
    limit_rss_mib: Optional[float] = None  # watchdog: resident memory that ends the worker
    # Filled in by the Hydra process after the worker ended:
    cgroup_peak_mib: Optional[float] = None  # the most the cgroup was charged
    cgroup_oom_kills: Optional[int] = None
    watchdog_highest_mib: Optional[float] = None  # the highest value the watchdog read
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryLimit:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        return _to_dict(self, omit_none=tuple(f.name for f in fields(self)))


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
    memory_limit: Optional[MemoryLimit] = None
    time: Optional[TimeResult] = None
    memory: Optional[MemoryResult] = None
    worker_wall_s: Optional[float] = None
    worker_returncode: Optional[int] = None
    worker_log: Optional[str] = None
    worker_start: Optional[str] = None  # fork | spawn
    zygote: Optional[Dict[str, Any]] = None
    # How the model was built: by a builder shared with other cells ({"shared": true, "new",
    # "built_in": the job folder of the cell that paid the build, "build_s", ...}); by this
    # worker from a weights snapshot shared with other cells (the same, and "via": "weights
    # snapshot", "save_s", "snapshot_mib"); or from weights of its own ({"shared": false, "why"}).
    build: Optional[Dict[str, Any]] = None
    # With timing.rounds > 1: what each round measured (time above pools their samples).
    rounds: Optional[List[Dict[str, Any]]] = None
    # The worker's window (UTC, ms), a zygote it started included; with lock=true, inside the
    # host-wide device locks (sweeper.engine.lock): no other cell measured on the device meanwhile.
    started_utc: Optional[str] = None
    finished_utc: Optional[str] = None
    lock_wait_s: Optional[float] = None  # waited for the device locks first; None: lock=false
    locks: Optional[Dict[str, str]] = None  # lock name (cpu, gpu-<uuid>) -> exclusive | shared
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
        if known.get("memory_limit") is not None:
            known["memory_limit"] = MemoryLimit.from_dict(known["memory_limit"])
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
                "memory_limit",
                "time",
                "memory",
                "worker_wall_s",
                "worker_returncode",
                "worker_log",
                "worker_start",
                "zygote",
                "build",
                "rounds",
                "started_utc",
                "finished_utc",
                "lock_wait_s",
                "locks",
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
    rounds: Optional[int] = None  # rounds measured so far (timing.rounds asks for); None: one
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
            "rounds",
            "environment",
            "overhead",
            "results",
        )
        if data.get("rounds") is None:
            data.pop("rounds")  # one round: as records always were
        return {**{k: data.pop(k) for k in order if k in data}, **data}

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
