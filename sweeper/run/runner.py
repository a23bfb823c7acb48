"""Run one cell from the Hydra job: reuse a matching record, else measure it in worker processes.

The Hydra process never imports a framework. Each mode (inference, training) runs in its own
fresh worker (``sweeper.run.worker``) under the cell's timeout; whatever happens to the worker
(an exception, the OOM killer, a hang), the job writes one ``record.json`` and returns normally,
so the multirun goes on and the collector runs at the end.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

from ..config.job import Job, cell_problem
from ..config.schema import Device, FrameworkName, WorkerStart
from ..fileio import write_json_atomic
from ..measure.env import environment
from ..record import (
    RECORD_NAME,
    Mode,
    ModeResult,
    Overhead,
    Record,
    RecordError,
    Status,
    read_record,
)
from .lock import device_locks
from .zygote import get_zygote

__all__ = ["run_job"]

log = logging.getLogger(__name__)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _reusable(record_path: Path, job: Job) -> Optional[Record]:
    """The existing record if it measured exactly this config and succeeded; else None.

    A record that is not reused is renamed, never overwritten: nothing a user ran is lost.
    """
    if not record_path.exists():
        return None
    try:
        old = read_record(record_path)
    except RecordError as exc:
        old, why = None, str(exc)
    else:
        same = old.config_sha256 == job.identity
        if same and old.status is Status.ok and not job.config.force:
            return old
        if not same:
            why = "it was measured with a different config"
        elif job.config.force:
            why = "force=true"
        else:
            why = f"its status was {old.status.value}"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    kept_as = record_path.with_name(f"record.replaced-{stamp}.json")
    os.replace(record_path, kept_as)
    log.warning("re-measuring %s: %s; the old record is kept as %s", record_path, why, kept_as)
    return None


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
            [sys.executable, "-m", "sweeper.run.worker", str(spec_path), str(result_path)],
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


def _run_worker(job: Job, mode: Mode, job_dir: Path, timeout_s: float) -> ModeResult:
    """Run one mode in a fresh worker; always return a result with a status."""
    spec_path = job_dir / f"worker-{mode.value}.spec.json"
    result_path = job_dir / f"worker-{mode.value}.json"
    log_path = job_dir / f"worker-{mode.value}.log"
    result_path.unlink(missing_ok=True)
    zygote_facts = None
    fork = _can_fork(job)
    # -- lock hook (sweeper/run/lock.py): the host-wide device locks around everything that
    # computes for this measurement (a zygote's start, the worker); waiting is not in the times.
    with device_locks(job, mode, job_dir) as held:
        spec = {
            "mode": mode.value,
            "config": job.config_dict,
            "parent_pid": os.getpid(),
            "spawned_at": time.time(),
        }
        write_json_atomic(spec_path, spec)
        tic = time.perf_counter()
        if fork:
            zygote, zygote_facts = _zygote_for(job, job_dir)
            returncode, timed_out = zygote.run(spec_path, result_path, log_path, timeout_s)
        else:
            returncode, timed_out = _spawn(job, spec_path, result_path, log_path, timeout_s)
        wall_s = time.perf_counter() - tic
    try:
        result = ModeResult.from_dict(json.loads(result_path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        result = ModeResult(mode=mode)
    held.annotate(result)  # lock hook: window, wait and locks into the record
    result.worker_wall_s = wall_s
    result.worker_returncode = returncode
    result.worker_log = log_path.name
    result.worker_start = "fork" if fork else "spawn"
    if zygote_facts is not None:
        # The framework import this worker did not pay, paid once by the zygote; included in
        # worker_wall_s of the cell that started the zygote.
        result.zygote = zygote_facts
    if timed_out:
        result.status = Status.timeout
        result.error = (
            f"stopped after timeout_s={job.config.timeout_s:g} s (phase {result.phase}); "
            "raise timeout_s if the cell is just slow"
        )
    elif returncode == -signal.SIGKILL:
        result.status = Status.oom
        result.error = (
            f"the worker was killed by SIGKILL during phase {result.phase}: on Linux "
            "that is the kernel's OOM killer (see dmesg); lower batch or seq, or free memory"
        )
    elif result.status is None:
        result.status = Status.error
        result.error = (
            f"the worker exited with code {returncode} during phase {result.phase} "
            f"without a result; see {log_path}"
        )
    if result.status is not Status.ok:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        log.error(
            "%s %s failed (%s): %s\n%s",
            job.cell,
            mode.value,
            result.status.value,
            result.error,
            "\n".join(tail),
        )
    return result


def run_job(
    job: Job,
    job_dir: Path,
    sweep_index: Optional[int] = None,
    hydra_choices: Optional[Dict[str, Any]] = None,
) -> Record:
    """Measure ``job`` (or keep its matching ok record) and write ``record.json``."""
    job_dir.mkdir(parents=True, exist_ok=True)
    record_path = job_dir / RECORD_NAME
    kept = _reusable(record_path, job)
    if kept is not None:
        log.info("kept %s: ok record for the same config (force=true re-measures)", job.cell)
        return kept

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
        log.exception("internal error while running %s", job.cell)
        record.status = Status.error
        record.error = f"internal error in the Hydra process: {type(exc).__name__}: {exc}"
    record.finished_utc = _utc_now()
    record.overhead = _overhead(record, time.perf_counter() - tic)
    # CPU the Hydra process itself used for this cell: it waits in the kernel, it does not spin.
    record.overhead.hydra_process_cpu_s = _own_cpu_s() - cpu_before
    record.write(record_path)
    for mode in record.results:  # folded into the record; the worker logs stay
        for name in (f"worker-{mode.value}.spec.json", f"worker-{mode.value}.json"):
            (job_dir / name).unlink(missing_ok=True)
    return record


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
