"""Peak memory against ground truth: a workload that touches a known number of MiB for ~2 ms."""

from __future__ import annotations

import ctypes
import mmap
import time

import pytest

from sweeper.config.schema import Config
from sweeper.engine.worker import measure
from sweeper.measure.memory import METHOD_RESET, peak_rss_mib, reset_peak, rss_mib
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
    assert memory.method == METHOD_RESET
    assert (result.time is not None) is speed
