"""Runs one mode (inference or training) of one cell in a fresh process and writes its result.

``python -m sweeper.run.worker SPEC.json RESULT.json``. A fresh process per measurement is what
makes a cell's memory figure independent of every cell before it; the parent (the Hydra job)
imports no framework, so each measurement pays exactly one framework import and one model build.
The result file is rewritten atomically after each phase, so a worker killed by the OOM killer
or a timeout still leaves what it had measured and how far it got.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict

from ..config.job import typed_config
from ..fileio import write_json_atomic
from ..measure.memory import (
    METHOD_LIFETIME,
    METHOD_RESET,
    peak_rss_mib,
    reset_peak,
    rss_mib,
    rss_parts_mib,
)
from ..measure.timing import time_calls
from ..record import MemoryResult, Mode, ModeResult, Status, TimeResult
from ..units import MIB

__all__ = ["die_with_parent", "main", "measure", "run"]


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (kill -9 of the sweep)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _limit_address_space(headroom_mib: int) -> float:
    """Cap the address space at its current size plus ``headroom_mib``; return the cap in MiB."""
    with open("/proc/self/status") as handle:
        vm_kib = int(handle.read().split("VmSize:")[1].split()[0])
    limit = (vm_kib * 1024) + headroom_mib * MIB
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit / MIB


def measure(backend: Any, step: Any, config: Any, result: ModeResult) -> None:
    """Cold call, warm-up, timed calls; peak memory over the timed calls (or one call)."""
    baseline_rss = rss_mib()  # model built and on the device, inputs made, nothing run yet
    baseline_parts = rss_parts_mib()
    can_reset = config.memory and reset_peak()
    backend.gpu_memory_reset()
    start = time.perf_counter()
    step()
    backend.sync()
    first_call_s = time.perf_counter() - start
    result.phases_s["first_call_s"] = first_call_s
    first_call_peak = peak_rss_mib() if config.memory and can_reset else None

    def reset_marks() -> None:
        if config.memory:
            reset_peak()
            backend.gpu_memory_reset()

    if config.speed:
        loop_start = time.perf_counter()
        stats = time_calls(
            step,
            backend.sync,
            config.timing,
            cold_call_done_s=first_call_s,
            before_timed=reset_marks,
        )
        result.phases_s["warmup_and_timed_s"] = time.perf_counter() - loop_start
        result.phases_s["timed_s"] = sum(stats.samples_s)
        result.time = TimeResult.from_dict(stats.to_dict())
    else:
        reset_marks()
        step()
        backend.sync()
    if not config.memory:
        return
    peak = peak_rss_mib()
    memory = MemoryResult(
        first_call_peak_rss_mib=first_call_peak,
        peak_rss_mib=peak,
        baseline_rss_mib=baseline_rss,
        peak_increase_mib=peak - baseline_rss,
        method=METHOD_RESET if can_reset else METHOD_LIFETIME,
        calls_covered="timed calls" if config.speed else "one call after the cold call",
        baseline_parts=baseline_parts,
        end_parts=rss_parts_mib(),
        headline_mib=peak,
        headline_source="peak_rss",
    )
    gpu = backend.gpu_memory_peaks_mib()
    if gpu:
        from ..measure.gpu import process_used_mib

        for key, value in {**gpu, **process_used_mib(os.getpid())}.items():
            setattr(memory, key, value)
        if memory.nvml_process_used_mib is not None:
            memory.headline_mib = memory.nvml_process_used_mib
            memory.headline_source = "nvml_process_used"
        else:
            memory.headline_mib = max(gpu.values())
            memory.headline_source = "framework allocator peak (NVML had no figure)"
    result.memory = memory


def run(spec: Dict[str, Any], result_path: Path) -> ModeResult:
    started = time.time()
    result = ModeResult(
        mode=Mode(spec["mode"]),
        phase="import",
        phases_s={"spawn_s": started - spec["spawned_at"]},
    )

    def save() -> None:
        write_json_atomic(result_path, result.to_dict())

    backend_cls = None
    try:
        config = typed_config(spec["config"])
        from ..frameworks import load

        tic = time.perf_counter()
        backend_cls = load(config.framework.name.value)
        result.phases_s["import_s"] = time.perf_counter() - tic
        backend = backend_cls(config)
        result.framework_runtime = backend.info()
        result.phase = "build"
        save()
        tic = time.perf_counter()
        step = backend.build(result.mode)
        backend.sync()
        result.phases_s["build_s"] = time.perf_counter() - tic
        result.model_class = type(backend.model).__name__
        result.model_config = backend.model_config
        result.model_parameters = backend.model_parameters
        # Peak of this fresh process so far (imports and model build), before any reset.
        result.build_peak_rss_mib = peak_rss_mib()
        if config.memory_limit_mib is not None:
            result.address_space_limit_mib = _limit_address_space(config.memory_limit_mib)
        result.phase = "measure"
        save()
        measure(backend, step, config, result)
        result.status = Status.ok
        result.phase = "done"
    except BaseException as exc:  # every failure is recorded; the parent decides what follows
        from ..frameworks import CellError

        oom = isinstance(exc, MemoryError) or (backend_cls is not None and backend_cls.is_oom(exc))
        result.status = Status.oom if oom else Status.error
        result.error = str(exc) if isinstance(exc, CellError) else f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    result.phases_s["worker_total_s"] = time.time() - started
    save()
    return result


def main(argv: list | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m sweeper.run.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    die_with_parent(spec["parent_pid"])
    run(spec, Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
