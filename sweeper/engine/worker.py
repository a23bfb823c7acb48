"""Runs one mode (inference or training) of one cell in a fresh process and writes its result.

``python -m sweeper.engine.worker SPEC.json RESULT.json`` (``worker_start=spawn``), or a child
forked from a zygote (``sweeper.engine.zygote``): from the zygote itself, which imported the
framework, or from a builder forked from it, which also built the model (:func:`build`) and
forks one child per cell. Either way the measuring process is fresh: nothing ran a forward pass
before it, so a cell's figures do not depend on the cells before it. The result file is
rewritten atomically after each phase and about once a second of timed calls, so a worker killed
by the OOM killer or a timeout still leaves what it had measured and how far it got.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..config.job import typed_config
from ..config.schema import Device
from ..fileio import write_json_atomic
from ..measure.limits import apply_memory_limit
from ..measure.memory import (
    METHOD_LIFETIME,
    METHOD_RESET,
    anon_peak_increase,
    peak_rss_mib,
    reset_peak,
    rss_mib,
    rss_parts_mib,
)
from ..measure.stats import TimeStats
from ..measure.timing import round_share, time_calls
from ..record import MemoryResult, MemorySource, Mode, ModeResult, Status, TimeResult
from ..units import MIB

__all__ = ["Built", "build", "die_with_parent", "main", "make_snapshot", "measure", "run"]

# While timing, the partial samples are saved at most this often: a cell stopped by timeout_s
# keeps what it measured, at the cost of one small file write per second of timed calls.
SAVE_EVERY_S = 1.0


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
    save: Optional[Any] = None,
) -> None:
    """Cold call, warm-up, timed calls; peak memory over the timed calls (or one call).

    ``gpu_device_before_mib``: the GPU's memory in use before this worker initialised CUDA
    (sweeper.measure.gpu.device_used_mib), for when NVML cannot see the worker's own use.
    ``save``: called with nothing about once every SAVE_EVERY_S of timed calls, after
    ``result.time`` holds the samples so far.
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

    reset_parts: Dict[str, Optional[float]] = {}

    def reset_marks() -> None:
        if config.memory:
            reset_peak()
            reset_parts.update(rss_parts_mib())
            backend.gpu_memory_reset()

    last_save = time.perf_counter()

    def on_sample(samples: List[float]) -> None:
        nonlocal last_save
        if save is None or time.perf_counter() - last_save < SAVE_EVERY_S:
            return
        partial = TimeStats(
            samples_s=list(samples),
            target_ci_pct=config.timing.target_ci_pct,
            first_call_s=first_call_s,
            stop_reason=f"unfinished: saved after {len(samples)} timed calls",
        )
        result.time = TimeResult.from_dict(partial.to_dict())
        save()
        last_save = time.perf_counter()

    if config.speed:
        loop_start = time.perf_counter()
        stats = time_calls(
            step,
            backend.sync,
            round_share(config.timing),
            cold_call_done_s=first_call_s,
            before_timed=reset_marks,
            on_sample=on_sample,
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
    end_parts = rss_parts_mib()
    # Without a reset the peak may come from any moment of the process: no bounds on its parts.
    anon_increase, anon_spread = (
        anon_peak_increase(peak, baseline_parts, reset_parts, end_parts)
        if can_reset
        else (None, None)
    )
    memory = MemoryResult(
        first_call_peak_rss_mib=first_call_peak,
        peak_rss_mib=peak,
        baseline_rss_mib=baseline_rss,
        peak_increase_mib=peak - baseline_rss,
        peak_increase_anon_mib=anon_increase,
        peak_increase_anon_spread_mib=anon_spread,
        method=METHOD_RESET if can_reset else METHOD_LIFETIME,
        calls_covered="timed calls" if config.speed else "one call after the cold call",
        baseline_parts=baseline_parts,
        reset_parts=reset_parts or None,
        end_parts=end_parts,
        headline_mib=peak,
        headline_source=MemorySource.peak_rss.value,
    )
    allocator = backend.gpu_memory_peaks_mib()
    if allocator:
        from ..measure.gpu import gpu_memory

        for key, value in gpu_memory(allocator, os.getpid(), gpu_device_before_mib).items():
            setattr(memory, key, value)
    result.memory = memory


@dataclass
class Built:
    """A model built in this process, before any forward pass: what a builder forks from."""

    backend: Any
    config: Any
    mode: Mode
    import_s: float
    build_s: float
    model_class: str
    build_peak_rss_mib: float  # this process's peak so far: imports and the build

    def facts(self) -> Dict[str, Any]:
        return {
            "build_s": self.build_s,
            "model_class": self.model_class,
            "build_peak_rss_mib": self.build_peak_rss_mib,
        }


def build(
    spec: Dict[str, Any],
    for_fork: bool = False,
    weights: Optional[Any] = None,
    snapshot: bool = False,
) -> Built:
    """Import the framework (a no-op after the zygote's import) and build the spec's model.

    ``weights``: a WeightsSnapshot of this model to take the initial weights from.
    ``snapshot``: the build's weights will be saved (raises NoWeightsSnapshot before building
    where they cannot be).
    """
    config = typed_config(spec["config"])
    from ..frameworks import NoWeightsSnapshot, load

    tic = time.perf_counter()
    backend = load(config.framework.name.value)(config)
    import_s = time.perf_counter() - tic
    if snapshot and (refusal := backend.weights_snapshot_refusal()):
        raise NoWeightsSnapshot(refusal)
    mode = Mode(spec["mode"])
    tic = time.perf_counter()
    backend.build_model(mode, for_fork=for_fork, weights=weights)
    backend.sync()
    return Built(
        backend=backend,
        config=config,
        mode=mode,
        import_s=import_s,
        build_s=time.perf_counter() - tic,
        model_class=type(backend.model).__name__,
        build_peak_rss_mib=peak_rss_mib(),
    )


def make_snapshot(spec: Dict[str, Any], fd: int) -> Tuple[Any, Dict[str, Any]]:
    """Build the spec's model, drawing its weights, and write them to ``fd``: (the
    WeightsSnapshot, facts for the records of the cells built from it)."""
    built = build(spec, snapshot=True)
    tic = time.perf_counter()
    weights = built.backend.save_weights(fd)
    facts = {
        **built.facts(),
        "save_s": time.perf_counter() - tic,
        "snapshot_mib": sum(entry[4] for entry in weights.variables) / MIB,
    }
    return weights, facts


def _private_tmp(spec: Dict[str, Any]) -> None:
    """Send this worker's temporary files (TensorFlow's autograph modules, for one) to the
    folder the runner made for it and removes when the worker has ended."""
    folder = spec.get("tmp_dir")
    if folder:
        os.environ["TMPDIR"] = folder
        tempfile.tempdir = folder


def run(
    spec: Dict[str, Any],
    result_path: Path,
    built: Optional[Built] = None,
    weights: Optional[Any] = None,
) -> ModeResult:
    """Measure one mode of one cell; ``built``: the model a builder made before forking us;
    ``weights``: a WeightsSnapshot of the model to build it from (see :func:`make_snapshot`)."""
    started = time.time()
    _private_tmp(spec)
    result = ModeResult(
        mode=Mode(spec["mode"]),
        phase="import",
        phases_s={"spawn_s": started - spec["spawned_at"]},
    )

    def save() -> None:
        write_json_atomic(result_path, result.to_dict())

    backend_cls = None
    try:
        gpu_before = None
        if built is None:
            if typed_config(spec["config"]).device.name is Device.cuda:
                from ..measure.gpu import device_used_mib

                gpu_before = device_used_mib()  # before anything of ours initialises CUDA
            result.phase = "build"
            save()
            built = build(spec, weights=weights)
            result.phases_s["import_s"] = built.import_s
            result.phases_s["build_s"] = built.build_s
        else:
            # Forked from a builder: its model, this cell's config (batch, seq, timing...).
            built.config = built.backend.config = typed_config(spec["config"])
            built.backend.after_fork()
        backend, config = built.backend, built.config
        backend_cls = type(backend)
        result.framework_runtime = backend.info()
        result.model_class = built.model_class
        result.model_config = backend.model_config
        result.model_parameters = backend.model_parameters
        # Peak of the process that built the model (imports and build), before any reset.
        result.build_peak_rss_mib = built.build_peak_rss_mib
        tic = time.perf_counter()
        step = backend.make_step(result.mode)
        result.phases_s["inputs_s"] = time.perf_counter() - tic
        if config.memory_limit_mib is not None:  # sweeper.measure.limits; the runner watches
            result.memory_limit = apply_memory_limit(config.memory_limit_mib, spec["parent_pid"])
        result.phase = "measure"
        save()
        measure(backend, step, config, result, gpu_before, save=save)
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
        print("usage: python -m sweeper.engine.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep's process stops us on Ctrl-C
    spec = json.loads(Path(argv[0]).read_text())
    die_with_parent(spec["parent_pid"])
    run(spec, Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
