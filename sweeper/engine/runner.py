"""Run one cell from the Hydra job: reuse a matching record, else measure it in worker processes.

The Hydra process never imports a framework. Each mode (inference, training) runs in its own
fresh worker (``sweeper.engine.worker``) under the cell's timeout; whatever happens to the worker
(an exception, the OOM killer, a hang), the job writes one ``record.json`` and returns normally,
so the multirun goes on and the collector runs at the end.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config.job import Job, cell_problem
from ..config.schema import Device, FrameworkName, WorkerStart
from ..fileio import write_json_atomic
from ..measure.env import environment
from ..measure.limits import WorkerWatch
from ..measure.stats import TimeStats
from ..record import (
    RECORD_NAME,
    Mode,
    ModeResult,
    Overhead,
    Record,
    RecordError,
    Status,
    TimeResult,
    read_record,
)
from .lock import device_locks
from .zygote import ForkUnsafe, ZygoteError, forget, get_zygote

__all__ = ["run_job"]

log = logging.getLogger(__name__)

# Zygote environments whose zygote refused to fork (a thread pool started after its import):
# later cells of the sweep spawn their workers instead of paying a zygote start to be refused.
_FORK_UNSAFE: Dict[tuple, str] = {}
# What submitit raises inside a SLURM job that reached its time limit (after its SIGUSR2): matched
# by name, so that the runner imports no launcher.
SCHEDULER_ENDED_JOB = ("UncompletedJobError",)
# Errors in the console are cut to this many characters; the record and the log keep all.
CONSOLE_ERROR_CHARS = 300


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _rounds_done(record: Record) -> int:
    return record.rounds or 1


def _previous(record_path: Path, job: Job, sweep_round: int) -> Tuple[Optional[Record], bool]:
    """(the record this job continues or keeps, whether to keep it as it is).

    Kept as it is: an ok record of the same config with every round this pass asks for (all
    ``timing.rounds`` in a single run), a skipped one (decided from the config alone), and in a
    later pass any record of this sweep (a cell that failed is retried on resume, not in the
    next pass). Continued: an ok record of the same config with fewer rounds. Anything else is
    renamed, never overwritten: nothing a user ran is lost.
    """
    if not record_path.exists():
        return None, False
    try:
        old = read_record(record_path)
    except RecordError as exc:
        old, why = None, str(exc)
    else:
        same = old.config_sha256 == job.identity
        force = job.config.force and sweep_round == 1  # force re-measures once, in pass 1
        wanted = min(sweep_round, job.config.timing.rounds)
        if same and not force:
            if old.status is Status.skipped or sweep_round > 1 and old.status is not Status.ok:
                return old, True
            if old.status is Status.ok:
                return old, _rounds_done(old) >= wanted
        if not same:
            why = "it was measured with a different config"
        elif force:
            why = "force=true"
        else:
            why = f"its status was {old.status.value}"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    kept_as = record_path.with_name(f"record.replaced-{stamp}.json")
    os.replace(record_path, kept_as)
    log.warning("re-measuring %s: %s; the old record is kept as %s", record_path, why, kept_as)
    return None, False


def _worker_env(job: Job) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    # transformers imports every installed framework unless told otherwise: a third of its import.
    if job.config.framework.name is FrameworkName.pt:
        env["USE_TF"], env["USE_TORCH"] = "0", "1"
    else:
        env["USE_TORCH"], env["USE_TF"] = "0", "1"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if job.config.device.name is Device.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # TensorFlow would otherwise place ops on a GPU
    else:
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's indices = NVML's
    return env


def _can_fork(job: Job) -> bool:
    return job.config.worker_start is WorkerStart.fork and sys.platform.startswith("linux")


def _zygote_for(job: Job, job_dir: Path) -> tuple:
    """The running zygote for this cell's framework and environment, and facts for the record."""
    log_path = job_dir / f"zygote-{job.cell.framework}.log"
    zygote, started_here = get_zygote(job.cell.framework, _worker_env(job), log_path)
    return zygote, {
        "import_s": zygote.import_s,
        "pid": zygote.proc.pid,
        "log": str(zygote.log_path),
        "started_by_this_cell": started_here,
    }


def _spawn(job: Job, spec_path: Path, result_path: Path, log_path: Path, timeout_s: float):
    """A worker as a new interpreter (worker_start=spawn): (returncode, timed_out)."""
    with open(log_path, "ab") as worker_log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeper.engine.worker", str(spec_path), str(result_path)],
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_worker_env(job),
        )
        try:
            return proc.wait(timeout=max(timeout_s, 0.001)), False
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(), True
        except BaseException:  # an interrupt: the worker must not outlive the measurement
            proc.kill()
            proc.wait()
            raise


def _start_worker(
    job: Job, mode: Mode, job_dir: Path, paths: Tuple[Path, Path, Path], timeout_s: float
) -> Tuple[int, bool, ModeResult]:
    """Run the worker (forked through the zygote, else spawned): (returncode, timed_out, facts).

    ``facts`` is a ModeResult carrying how the worker started; the worker's own result is read
    from its file afterwards.
    """
    spec_path, result_path, log_path = paths
    facts = ModeResult(mode=mode, worker_start="spawn")
    env_key = (job.cell.framework, tuple(sorted(_worker_env(job).items())))
    if _can_fork(job) and env_key not in _FORK_UNSAFE:
        zygote, facts.zygote = _zygote_for(job, job_dir)
        build = None
        if job.config.share_build:
            build = {
                "key": job.build_key(mode),
                "slot": mode.value,
                "log": str(job_dir / f"builder-{mode.value}.log"),
            }
        try:
            returncode, timed_out, builder = zygote.run(
                spec_path, result_path, log_path, timeout_s, build=build
            )
            facts.worker_start = "fork"
            if build is None:
                builder = {"shared": False, "why": "share_build=false"}
            facts.build = builder or None
            return returncode, timed_out, facts
        except ForkUnsafe as exc:
            forget(zygote)
            _FORK_UNSAFE[env_key] = str(exc)
            log.warning(
                "the %s zygote refused to fork (%s); this and later cells start their workers "
                "as new interpreters (worker_start=spawn)",
                job.cell.framework,
                exc,
            )
            facts.zygote = {**facts.zygote, "refused_fork": str(exc)}
    returncode, timed_out = _spawn(job, spec_path, result_path, log_path, timeout_s)
    return returncode, timed_out, facts


def _run_worker(job: Job, mode: Mode, job_dir: Path, timeout_s: float) -> ModeResult:
    """Run one mode in a fresh worker; always return a result with a status."""
    spec_path = job_dir / f"worker-{mode.value}.spec.json"
    result_path = job_dir / f"worker-{mode.value}.json"
    log_path = job_dir / f"worker-{mode.value}.log"
    tmp_dir = job_dir / f"tmp-{mode.value}"
    result_path.unlink(missing_ok=True)
    if timeout_s <= 0:
        return ModeResult(
            mode=mode,
            status=Status.timeout,
            phase="start",
            error=(
                f"not started: the cell's timeout_s={job.config.timeout_s:g} s was spent before "
                "this mode could start; raise timeout_s if the cell is just slow"
            ),
        )
    # The host-wide device locks (sweeper.engine.lock) around everything that computes for this
    # measurement: a zygote's start, a builder's build, the worker. Waiting is not in the times.
    with device_locks(job, mode, job_dir) as held:
        tmp_dir.mkdir(exist_ok=True)
        spec = {
            "mode": mode.value,
            "config": job.config_dict,
            "parent_pid": os.getpid(),
            "spawned_at": time.time(),
            "tmp_dir": str(tmp_dir),
        }
        write_json_atomic(spec_path, spec)
        tic = time.perf_counter()
        try:
            # OOM counters around the worker, memory_limit_mib's watchdog (sweeper.measure.limits)
            with WorkerWatch(result_path, job.config.memory_limit_mib) as watch:
                returncode, timed_out, facts = _start_worker(
                    job, mode, job_dir, (spec_path, result_path, log_path), timeout_s
                )
        except ZygoteError as exc:
            log.error("%s %s: %s", job.cell, mode.value, exc)
            result = ModeResult(mode=mode, status=Status.error, error=f"internal error: {exc}")
            held.annotate(result)
            return result
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        wall_s = time.perf_counter() - tic
    try:
        result = ModeResult.from_dict(json.loads(result_path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        result = ModeResult(mode=mode)
    held.annotate(result)  # lock hook: window, wait and locks into the record
    result.worker_wall_s = wall_s
    result.worker_returncode = returncode
    result.worker_log = log_path.name
    result.worker_start = facts.worker_start
    result.zygote = facts.zygote  # the import this worker did not pay, paid once by the zygote
    if facts.build is not None:
        result.build = facts.build
        if facts.build.get("shared") and facts.build.get("new"):  # this cell paid the build
            if facts.build.get("via") == "weights snapshot":  # the worker built one more
                result.phases_s["snapshot_s"] = facts.build["build_s"] + facts.build["save_s"]
            else:
                result.phases_s["build_s"] = facts.build["build_s"]
    if timed_out:
        result.status = Status.timeout
        kept = f"; {result.time.timed_calls} timed calls kept" if result.time else ""
        result.error = (
            f"stopped after timeout_s={job.config.timeout_s:g} s (phase {result.phase}{kept}); "
            "raise timeout_s if the cell is just slow"
        )
    elif (verdict := watch.verdict(returncode, result)) is not None:  # a signal or the limit
        result.status, result.error = verdict
    elif result.status is None:
        result.status = Status.error
        result.error = (
            f"the worker exited with code {returncode} during phase {result.phase} "
            f"without a result; see {log_path}"
        )
    if result.status is not Status.ok:
        error = " ".join((result.error or "").split())
        if len(error) > CONSOLE_ERROR_CHARS:
            error = error[: CONSOLE_ERROR_CHARS - 3] + "..."
        log.error(
            "%s %s: %s: %s (log: %s)", job.cell, mode.value, result.status.value, error, log_path
        )
    return result


def run_job(
    job: Job,
    job_dir: Path,
    sweep_index: Optional[int] = None,
    hydra_choices: Optional[Dict[str, Any]] = None,
    one_round: bool = False,
) -> Record:
    """Measure ``job`` (or keep its matching record) and write ``record.json``.

    ``one_round``: measure at most one more round (a multirun: the sweeper runs every cell
    again for each round, ``sweep_round``); else every round the cell still lacks.
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    record_path = job_dir / RECORD_NAME
    sweep_round = job.config.sweep_round
    record, keep = _previous(record_path, job, sweep_round)
    if keep:
        log.info(
            "kept %s: %s record for the same config (force=true re-measures)",
            job.cell,
            record.status.value,
        )
        return record
    wanted = (
        job.config.timing.rounds if not one_round else min(sweep_round, job.config.timing.rounds)
    )
    while True:
        fresh = _measure_round(job, job_dir, sweep_index, hydra_choices)
        record = fresh if record is None else _merged(record, fresh)
        record.write(record_path)
        _drop_worker_files(job_dir, fresh.results)  # folded into the record; the logs stay
        if one_round or record.status is not Status.ok or _rounds_done(record) >= wanted:
            return record


def _measure_round(
    job: Job, job_dir: Path, sweep_index: Optional[int], hydra_choices: Optional[Dict[str, Any]]
) -> Record:
    """One round of the cell: every mode in a fresh worker."""
    tic = time.perf_counter()
    cpu_before = _own_cpu_s()
    record = Record(
        cell=job.cell,
        status=Status.ok,
        config=job.config_dict,
        config_sha256=job.identity,
        overrides=job.overrides,
        sweep_index=sweep_index,
        hydra_choices=hydra_choices or {},
        started_utc=_utc_now(),
    )
    try:
        _measure(job, job_dir, record, tic)
    except Exception as exc:  # a bug of ours must not sink the sweep either: record it
        if type(exc).__name__ in SCHEDULER_ENDED_JOB:
            record.status = Status.killed
            record.error = (
                f"the scheduler ended this job ({type(exc).__name__}: {exc}): a SLURM time "
                "limit or preemption; resuming the sweep (same hydra.sweep.dir) re-submits it"
            )
        else:
            log.exception("internal error while running %s", job.cell)
            record.status = Status.error
            record.error = f"internal error in the Hydra process: {type(exc).__name__}: {exc}"
    except BaseException:  # an interrupt: no record, no half-written worker files
        _drop_worker_files(job_dir, job.modes)
        raise
    record.finished_utc = _utc_now()
    record.overhead = _overhead(record, time.perf_counter() - tic)
    # CPU the Hydra process itself used for this cell: it waits in the kernel, it does not spin.
    record.overhead.hydra_process_cpu_s = _own_cpu_s() - cpu_before
    return record


def _round_facts(number: int, record: Record, result: ModeResult) -> Dict[str, Any]:
    """What the record keeps of each round beside the pooled samples."""
    timing, memory = result.time, result.memory
    return {
        "round": number,
        "status": result.status.value if result.status else None,
        "started_utc": record.started_utc,
        "finished_utc": record.finished_utc,
        "timed_calls": timing.timed_calls if timing else 0,
        "median_s": timing.median_s if timing else None,
        "first_call_s": result.phases_s.get("first_call_s"),
        "stop_reason": timing.stop_reason if timing else None,
        "headline_mib": memory.headline_mib if memory else None,
        "worker_wall_s": result.worker_wall_s,
        "build_new": (result.build or {}).get("new"),
    }


def _merged(previous: Record, fresh: Record) -> Record:
    """``previous`` (ok, same config) with the round ``fresh`` measured: samples pooled, the
    interval recomputed over the rounds (sweeper.measure.stats), memory the highest round's."""
    number = _rounds_done(previous) + 1
    for result in previous.results.values():
        if result.rounds is None:  # a record of one round: describe that round first
            result.rounds = [_round_facts(1, previous, result)]
    merged = previous
    merged.rounds = number
    merged.finished_utc = fresh.finished_utc
    for mode, new in fresh.results.items():
        old = merged.results.get(mode)
        if old is None:
            merged.results[mode] = new
            continue
        old.rounds.append(_round_facts(number, fresh, new))
        if not new.ok:
            old.status, old.error = new.status, f"round {number}: {new.error}"
            continue
        if old.time and new.time:
            sizes = old.time.round_sizes or [len(old.time.samples_s)]
            reasons = [r["stop_reason"] for r in old.rounds]
            pooled = TimeStats(
                samples_s=old.time.samples_s + new.time.samples_s,
                target_ci_pct=old.time.target_ci_pct,
                warmup_calls=old.time.warmup_calls,
                first_call_s=old.time.first_call_s,  # the first round's: the cell's cold call
                stop_reason="; ".join(f"round {i}: {r}" for i, r in enumerate(reasons, 1)),
                round_sizes=[*sizes, len(new.time.samples_s)],
            )
            old.time = TimeResult.from_dict(pooled.to_dict())
        if new.memory and (not old.memory or new.memory.headline_mib > old.memory.headline_mib):
            old.memory = new.memory  # the peak over every round's timed calls
        for key, value in new.phases_s.items():
            if key.endswith("_s") and key != "spawn_s":
                old.phases_s[key] = old.phases_s.get(key, 0.0) + value
    if fresh.status.severity > merged.status.severity:
        merged.status, merged.error = fresh.status, f"round {number}: {fresh.error}"
    if merged.overhead and fresh.overhead:
        for key in ("job_wall_s", "warmup_and_timed_s", "overhead_s", "hydra_process_cpu_s"):
            total = (getattr(merged.overhead, key) or 0.0) + (getattr(fresh.overhead, key) or 0.0)
            setattr(merged.overhead, key, total)
        merged.overhead.workers += fresh.overhead.workers
    return merged


def _drop_worker_files(job_dir: Path, modes) -> None:
    for mode in modes:
        for name in (f"worker-{mode.value}.spec.json", f"worker-{mode.value}.json"):
            (job_dir / name).unlink(missing_ok=True)
        shutil.rmtree(job_dir / f"tmp-{mode.value}", ignore_errors=True)


def _measure(job: Job, job_dir: Path, record: Record, tic: float) -> None:
    """Fill ``record``: environment, then the cell's problem or each mode's worker result."""
    record.environment = env = environment(job.config)
    problem = cell_problem(job)
    if problem is None and job.config.device.name is Device.cuda and not env.get("num_gpus"):
        problem = (
            Status.error,
            f"device=cuda but no NVIDIA GPU is visible ({env.get('nvml', 'NVML found none')}); "
            "run with device=cpu, or on a machine with a GPU and its driver",
        )
    if problem is not None:
        record.status, record.error = problem
        log.warning("%s %s: %s", job.cell, record.status.value, record.error)
        return
    for mode in job.modes:
        waited_s = sum(r.lock_wait_s or 0.0 for r in record.results.values())  # lock hook
        remaining = job.config.timeout_s - (time.perf_counter() - tic - waited_s)
        result = _run_worker(job, mode, job_dir, remaining)
        record.results[mode] = result
        if result.status.severity > record.status.severity:
            record.status, record.error = result.status, f"{mode.value}: {result.error}"
        if result.status is Status.timeout:
            break


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _overhead(record: Record, job_wall_s: float) -> Overhead:
    """Where the cell's wall time went: measuring, and everything else (the sweep's own cost)."""
    measuring = sum(r.phases_s.get("warmup_and_timed_s", 0.0) for r in record.results.values())
    per_mode = {
        mode.value: {"worker_wall_s": r.worker_wall_s, **r.phases_s}
        for mode, r in record.results.items()
    }
    return Overhead(
        job_wall_s=job_wall_s,
        warmup_and_timed_s=measuring,
        overhead_s=job_wall_s - measuring,
        workers=len(record.results),
        per_mode=per_mode,
    )
