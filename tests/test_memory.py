"""Peak memory against ground truth: a workload that touches a known number of MiB for ~2 ms."""

from __future__ import annotations

import ctypes
import mmap
import time

import pytest

from sweeper.config.schema import Config
from sweeper.engine.worker import measure
from sweeper.measure.memory import (
    METHOD_RESET,
    anon_peak_increase,
    peak_rss_mib,
    reset_peak,
    rss_mib,
)
from sweeper.record import Mode, ModeResult
from tests.helpers import default_timing

pytestmark = pytest.mark.skipif(not reset_peak(), reason="needs Linux /proc/self/clear_refs")


def spike(mib: int, hold_s: float = 0.002) -> None:
    """Map ``mib`` MiB, write every byte (so every page is resident), hold, unmap."""
    size = mib << 20
    area = mmap.mmap(-1, size)
    buffer = (ctypes.c_char * size).from_buffer(area)
    ctypes.memset(ctypes.addressof(buffer), 1, size)
    end = time.perf_counter() + hold_s
    while time.perf_counter() < end:
        pass
    del buffer
    area.close()


@pytest.mark.parametrize("mib", [64, 256])
def test_a_2ms_spike_is_measured_within_1_percent(mib):
    spike(8)  # fault in the code path once
    before = rss_mib()
    assert reset_peak()
    spike(mib)
    increase = peak_rss_mib() - before
    assert abs(increase - mib) <= max(1.0, 0.01 * mib), increase
    assert rss_mib() < before + 2  # the spike is gone again: only the high-water mark saw it


class SpikeBackend:
    """The framework interface around a workload whose memory we know."""

    def __init__(self, mib: int) -> None:
        self.mib = mib

    def sync(self) -> None:
        pass

    def gpu_memory_reset(self) -> None:
        pass

    def gpu_memory_peaks_mib(self) -> dict:
        return {}

    def step(self) -> None:
        spike(self.mib)


@pytest.mark.parametrize("speed", [True, False])
def test_the_worker_reports_the_spike_of_its_calls(speed):
    backend = SpikeBackend(128)
    config = Config(speed=speed, memory=True, timing=default_timing(min_time_s=0.05, max_time_s=1))
    result = ModeResult(mode=Mode.inference)
    measure(backend, backend.step, config, result)
    memory = result.memory
    assert abs(memory.peak_increase_mib - 128) <= max(1.0, 1.28), memory
    assert memory.headline_mib == memory.peak_rss_mib
    assert memory.end_parts["rss_anon_mib"] > 0 and memory.baseline_parts["rss_file_mib"] > 0
    assert set(memory.reset_parts) == {"rss_anon_mib", "rss_file_mib", "rss_shmem_mib"}
    # Mapped and gone within the calls, the spike is neither in the parts before nor after them:
    # what the calls added beyond mapped code, as the anonymous increase.
    assert abs(memory.peak_increase_anon_mib - 128) <= 1.28, memory
    assert 0 <= memory.peak_increase_anon_spread_mib < 1.0
    assert memory.method == METHOD_RESET
    assert (result.time is not None) is speed


def _parts(anon: float, file: float, shmem: float = 0.0) -> dict:
    return {"rss_anon_mib": anon, "rss_file_mib": file, "rss_shmem_mib": shmem}


def test_the_anonymous_increase_leaves_out_code_mapped_by_the_calls():
    # Built: 270 anon + 13 file. The cold call maps 19 MiB of code before the reset; the peak
    # (307.7) holds 5 MiB more anonymous memory than the start.
    baseline, reset, end = _parts(270.0, 13.0), _parts(275.0, 32.0), _parts(275.0, 32.0)
    assert anon_peak_increase(307.0, baseline, reset, end) == (5.0, 0.0)
    # Code mapped during the timed calls: the figure is the lower bound, the spread says by how
    # much the peak may have held more anonymous memory.
    increase, spread = anon_peak_increase(307.0, baseline, reset, _parts(275.0, 34.0))
    assert (increase, spread) == (3.0, 2.0)
    # Shared memory (a memfd) is not anonymous either.
    assert anon_peak_increase(
        317.0, baseline, _parts(275.0, 32.0, 10.0), _parts(275.0, 32.0, 10.0)
    ) == (5.0, 0.0)


def test_the_anonymous_increase_is_unknown_without_the_parts():
    parts = _parts(270.0, 13.0)
    assert anon_peak_increase(300.0, parts, None, parts) == (None, None)
    assert anon_peak_increase(300.0, parts, {}, parts) == (None, None)
    assert anon_peak_increase(300.0, {"rss_anon_mib": None}, parts, parts) == (None, None)
    assert anon_peak_increase(300.0, parts, {**parts, "rss_file_mib": None}, parts) == (None, None)
