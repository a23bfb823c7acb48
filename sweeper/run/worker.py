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
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, Optional

from ..config.job import typed_config
from ..config.schema import Device
from ..fileio import write_json_atomic
from ..measure.limits import apply_memory_limit
from ..measure.memory import (
    METHOD_LIFETIME,
    METHOD_RESET,
    peak_rss_mib,
    reset_peak,
    rss_mib,
    rss_parts_mib,
)
from ..measure.timing import time_calls
from ..record import MemoryResult, MemorySource, Mode, ModeResult, Status, TimeResult

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


def measure(
    backend: Any,
    step: Any,
    config: Any,
    result: ModeResult,
    gpu_device_before_mib: Optional[float] = None,
) -> None:
    """Cold call, warm-up, timed calls; peak memory over the timed calls (or one call).

    ``gpu_device_before_mib``: the GPU's memory in use before this worker initialised CUDA
    (sweeper.measure.gpu.device_used_mib), for when NVML cannot see the worker's own use.
    """
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
        headline_source=MemorySource.peak_rss.value,
    )
    allocator = backend.gpu_memory_peaks_mib()
    if allocator:
        from ..measure.gpu import gpu_memory

        for key, value in gpu_memory(allocator, os.getpid(), gpu_device_before_mib).items():
            setattr(memory, key, value)
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
        gpu_before = None
        if config.device.name is Device.cuda:  # before anything of ours initialises CUDA
            from ..measure.gpu import device_used_mib

            gpu_before = device_used_mib()
        backend = backend_cls(config)
        result.framework_runtime = backend.info()
        result.phase = "build"
        save()
        tic = time.perf_counter()
        step = backend.build(result.mode)
        backend.sync()
        result.phases_s["build_s"] = time.perf_counter() - tic
        result.model_class = type(backend.model).__name__
        # Peak of this fresh process so far (imports and model build), before any reset.
        result.build_peak_rss_mib = peak_rss_mib()
        if config.memory_limit_mib is not None:  # sweeper.measure.limits; the runner watches
            result.memory_limit = apply_memory_limit(config.memory_limit_mib, spec["parent_pid"])
        result.phase = "measure"
        save()
        measure(backend, step, config, result, gpu_before)
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
