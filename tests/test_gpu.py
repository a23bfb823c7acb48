"""GPU code paths: what the CPU can test (NVML device mapping, guards, the GPU memory figure
against fake NVML and a fake caching allocator, the tables' source marks), and real GPU runs
marked ``gpu`` (``make test-gpu`` on a machine with a CUDA GPU)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from sweeper.config.schema import Config
from sweeper.engine.worker import measure
from sweeper.measure import gpu
from sweeper.record import MemorySource, Mode, ModeResult, memory_marks
from sweeper.report.collect import collect
from tests.helpers import QUICK, TINY_BERT, default_timing, records, run_sweeper

GOLDEN = Path(__file__).parent / "data" / "golden"


class FakeNvml:
    """NVML with one device: records which look-up the mapping used; the device holds
    ``other_mib`` of other processes and, once the allocator has started, this process's CUDA
    context and the allocator's reservation. ``lists_pid=False`` is a container with its own pid
    namespace (NVML shows host pids) or MIG; ``processes_error`` an NVML that refuses the query."""

    def __init__(
        self, allocator=None, context_mib=500.0, other_mib=1000.0, lists_pid=True, **options
    ):
        self.calls = []
        self.allocator = allocator
        self.context_mib = context_mib
        self.other_mib = other_mib
        self.lists_pid = lists_pid
        self.processes_error = options.get("processes_error")

    def nvmlInit(self):  # noqa: N802 - NVML's names
        pass

    def nvmlShutdown(self):  # noqa: N802
        pass

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802
        self.calls.append(("index", index))
        return f"handle-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid):  # noqa: N802
        self.calls.append(("uuid", uuid))
        return f"handle-{uuid}"

    def _process_mib(self):
        if self.allocator is None or not self.allocator.started:
            return 0.0
        return self.context_mib + self.allocator.reserved_mib

    def nvmlDeviceGetComputeRunningProcesses(self, handle):  # noqa: N802
        if self.processes_error:
            raise self.processes_error
        pid = os.getpid() if self.lists_pid else 1  # a host pid, not ours
        return [SimpleNamespace(pid=pid, usedGpuMemory=int(self._process_mib() * 2**20))]

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        used = self.other_mib + self._process_mib()
        return SimpleNamespace(used=int(used * 2**20), total=int(80_000 * 2**20))


class CachingAllocator:
    """PyTorch's interface around a caching allocator whose reservations we know: the cold call
    peaks at 400 MiB, every later call at 300 MiB, and each call gives back all but 250 MiB
    (as after an OOM retry or ``empty_cache``), so "reserved now" is not the peak."""

    def __init__(self):
        self.started = False
        self.reserved_mib = 0.0
        self.max_reserved_mib = 0.0
        self.calls = 0

    def build(self):
        self.started = True  # the CUDA context is created with the model
        self.reserved_mib = self.max_reserved_mib = 200.0
        self.allocated_mib = 150.0  # weights and inputs, live through every call

    def step(self):
        self.calls += 1
        self.max_reserved_mib = max(self.max_reserved_mib, 400.0 if self.calls == 1 else 300.0)
        self.reserved_mib = 250.0

    def sync(self):
        pass

    def gpu_memory_reset(self):
        self.max_reserved_mib = self.reserved_mib
        self.allocated_at_reset_mib = self.allocated_mib

    def gpu_memory_peaks_mib(self):
        return {
            "torch_max_allocated_mib": self.max_reserved_mib - 20,
            "torch_allocated_at_reset_mib": self.allocated_at_reset_mib,
            "torch_max_reserved_mib": self.max_reserved_mib,
            "torch_reserved_mib": self.reserved_mib,
        }


def measure_on_fake_gpu(monkeypatch, **nvml_options):
    """The worker's own measure() on the fake GPU; the device's use read before the build, as
    the worker reads it before it initialises CUDA."""
    allocator = CachingAllocator()
    nvml = FakeNvml(allocator, **nvml_options)
    monkeypatch.setattr(gpu, "nvml", lambda: (nvml, None))
    before = gpu.device_used_mib()
    allocator.build()
    config = Config(memory=True, timing=default_timing(min_time_s=0.01, max_time_s=0.1))
    result = ModeResult(mode=Mode.inference)
    measure(allocator, allocator.step, config, result, gpu_device_before_mib=before)
    return result.memory


@pytest.mark.parametrize(
    "lists_pid, source",
    [(True, MemorySource.nvml_process), (False, MemorySource.nvml_device_delta)],
    ids=["nvml-sees-the-process", "container-or-mig"],
)
def test_the_gpu_figure_is_the_process_peak_over_the_timed_calls(monkeypatch, lists_pid, source):
    memory = measure_on_fake_gpu(monkeypatch, lists_pid=lists_pid)
    # CUDA context 500 + the allocator's peak over the timed calls 300: not the cold call's 400,
    # not the 250 it still holds after them.
    assert memory.headline_mib == 800.0
    assert memory.headline_source == source.value
    assert memory.calls_covered == "timed calls"
    assert memory.gpu_held_mib == 750.0 and memory.gpu_outside_allocator_mib == 500.0
    assert memory.torch_max_reserved_mib == 300.0 and memory.torch_reserved_mib == 250.0
    assert memory.nvml_device_before_mib == 1000.0 and memory.nvml_device_used_mib == 1750.0
    assert memory.nvml_process_used_mib == (750.0 if lists_pid else None)
    assert memory.peak_rss_mib > 0  # the CPU figure is measured over the same calls
    # The tensors' peak over the timed calls (280) beyond the weights and inputs (150).
    assert memory.gpu_peak_increase_mib == 130.0


def test_an_nvml_that_refuses_the_process_query_falls_back_to_the_device(monkeypatch):
    error = RuntimeError("NVMLError_NoPermission")  # MIG without privileges
    memory = measure_on_fake_gpu(monkeypatch, processes_error=error)
    assert memory.headline_mib == 800.0
    assert memory.headline_source == MemorySource.nvml_device_delta.value


def test_a_device_delta_below_the_allocators_hold_is_not_used(monkeypatch):
    allocator = CachingAllocator()
    nvml = FakeNvml(allocator)
    monkeypatch.setattr(gpu, "nvml", lambda: (nvml, None))
    nvml.lists_pid = False
    before = gpu.device_used_mib()
    nvml.other_mib = 0.0  # another process freed 1000 MiB while the cell ran
    allocator.build()
    allocator.step()
    allocator.gpu_memory_reset()
    allocator.step()
    fields = gpu.gpu_memory(allocator.gpu_memory_peaks_mib(), os.getpid(), before)
    assert fields["headline_mib"] == 300.0
    assert fields["headline_source"] == MemorySource.allocator_peak.value
    assert fields["gpu_note"] == (
        "the device's use grew by -250 MiB, less than the 250 MiB the allocator holds: another "
        "process freed GPU memory meanwhile; not used"
    )


def test_without_nvml_the_allocators_peak_stands_alone(monkeypatch):
    monkeypatch.setattr(gpu, "nvml", lambda: (None, "NVML unavailable: no driver"))
    fields = gpu.gpu_memory(
        {"torch_max_reserved_mib": 300.0, "torch_reserved_mib": 250.0}, os.getpid(), None
    )
    assert fields["headline_mib"] == 300.0
    assert fields["headline_source"] == MemorySource.allocator_peak.value
    assert fields["gpu_note"] == "NVML shows neither this process nor the device's use"
    assert "gpu_held_mib" not in fields


def test_tensorflows_pool_is_the_process_total(monkeypatch):
    # TensorFlow reports the peak its tensors used (280); its pool, grown on demand and never
    # shrunk, plus the context is what NVML sees after the calls.
    pool = SimpleNamespace(started=True, reserved_mib=400.0)
    monkeypatch.setattr(gpu, "nvml", lambda: (FakeNvml(pool), None))
    fields = gpu.gpu_memory({"tf_peak_mib": 280.0}, os.getpid(), 1000.0)
    assert fields["headline_mib"] == 900.0
    assert fields["headline_source"] == MemorySource.nvml_process.value
    assert fields["gpu_held_mib"] == 900.0 and "gpu_outside_allocator_mib" not in fields


def test_the_gpu_increase_is_the_tensors_peak_beyond_those_at_the_start():
    assert gpu.peak_increase_mib({"tf_peak_mib": 280.0, "tf_current_at_reset_mib": 200.0}) == 80.0
    torch_figures = {"torch_max_allocated_mib": 300.0, "torch_allocated_at_reset_mib": 120.0}
    assert gpu.peak_increase_mib({**torch_figures, "torch_max_reserved_mib": 400.0}) == 180.0
    # Without the figure at the start (an older backend), no increase rather than a wrong one.
    assert gpu.peak_increase_mib({"torch_max_allocated_mib": 300.0}) is None
    assert gpu.peak_increase_mib({}) is None


def test_memory_marks_only_when_a_tables_sources_differ():
    assert memory_marks(["nvml_process", None, "nvml_process"]) == ({}, [])
    assert memory_marks([]) == ({}, [])
    marks, notes = memory_marks(
        ["allocator_peak", "nvml_process", None, "nvml_device_delta", "nvml_process_used"]
    )
    assert marks == {
        "nvml_process": "p",
        "nvml_device_delta": "d",
        "allocator_peak": "a",
        "nvml_process_used": "?",
    }
    assert notes == [
        "p: GPU: the worker's use per NVML's process list (CUDA context included)",
        "d: GPU: device use minus device use before the worker (CUDA context included)",
        "a: GPU: the framework allocator's peak alone (CUDA context not included)",
        "?: headline_source=nvml_process_used (an older record)",
    ]


def test_a_table_marks_its_gpu_figures_when_their_sources_differ(tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(GOLDEN, sweep)
    for name, source in (("seq=8", "nvml_process"), ("seq=32", "nvml_device_delta")):
        path = sweep / name / "record.json"
        record = json.loads(path.read_text())
        record["results"]["inference"]["memory"]["headline_source"] = source
        path.write_text(json.dumps(record))
    result = collect(sweep)
    report = result.report.splitlines()
    table = report[report.index(20 * "=" + "      INFERENCE - MEMORY - RESULT       " + 20 * "=") :]
    assert [line.split()[-1] for line in table[4:9]] == ["1227p", "1281d", "1307r", "N/A", "1005r"]
    assert table[10:13] == [
        "r: peak resident memory (CPU)",
        "p: GPU: the worker's use per NVML's process list (CUDA context included)",
        "d: GPU: device use minus device use before the worker (CUDA context included)",
    ]
    assert all(len(line) <= 80 for line in table[:13])
    # The training table's figures share one source: no marks, as before.
    train = report[report.index(20 * "=" + "        TRAIN - MEMORY - RESULTS        " + 20 * "=") :]
    assert train[4].split()[-1] == "1400"
    # The CSV files keep the old tool's plain numbers.
    expected = GOLDEN.parent / "golden_expected" / "inference_memory.csv"
    assert (sweep / "inference_memory.csv").read_bytes() == expected.read_bytes()


@pytest.mark.parametrize(
    "visible, call",
    [
        (None, ("index", 0)),
        ("3", ("index", 3)),
        ("2,0", ("index", 2)),
        (
            "GPU-8f6c1a2b-0000-1111-2222-333344445555,1",
            ("uuid", "GPU-8f6c1a2b-0000-1111-2222-333344445555"),
        ),
        (
            "MIG-4d1f5e6a-aaaa-bbbb-cccc-ddddeeeeffff",
            ("uuid", "MIG-4d1f5e6a-aaaa-bbbb-cccc-ddddeeeeffff"),
        ),
    ],
)
def test_cuda_visible_devices_maps_to_the_right_nvml_device(visible, call):
    nvml = FakeNvml()
    gpu.visible_device_handle(nvml, visible)
    assert nvml.calls == [call]


def test_an_empty_cuda_visible_devices_means_no_gpu():
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES is empty"):
        gpu.visible_device_handle(FakeNvml(), "")


def test_without_a_driver_nvml_degrades_to_a_reason():
    module, why = gpu.nvml()
    if module is not None:
        pytest.skip("this machine has an NVIDIA driver")
    assert why.startswith("NVML unavailable")
    assert gpu.gpu_inventory()["num_gpus"] == 0
    assert gpu.process_used_mib(1) == {"nvml_process_used_mib": None, "nvml_device_used_mib": None}
    assert gpu.device_used_mib() is None


@pytest.mark.gpu
@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_a_cell_on_the_gpu_records_allocator_and_nvml_memory(tmp_path, sweep_dir, framework):
    proc = run_sweeper(
        [
            *TINY_BERT,
            *QUICK,
            f"framework={framework}",
            "device=cuda",
            "seq=128",
            "training=true",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(sweep_dir)
    env = record["environment"]
    assert env["use_gpu"] is True and env["num_gpus"] >= 1 and env["gpu_ram_mb"] > 0
    for mode in ("inference", "training"):
        memory = record["results"][mode]["memory"]
        allocator = "torch_max_reserved_mib" if framework == "pt" else "tf_peak_mib"
        assert memory[allocator] > 0
        # The process's total, CUDA context included, from NVML's per-process figure where it
        # sees the worker, else from the device's use (containers, MIG): never the allocator
        # alone while NVML works.
        assert memory["headline_source"] in ("nvml_process", "nvml_device_delta")
        assert memory["gpu_held_mib"] > memory[allocator]
        assert memory["headline_mib"] >= memory["gpu_held_mib"]
        assert memory["calls_covered"] == "timed calls"
        # The calls' activations, beyond the weights and inputs held when they start.
        assert 0 < memory["gpu_peak_increase_mib"] < memory["headline_mib"]
        if framework == "pt":
            assert memory["headline_mib"] == pytest.approx(
                memory["gpu_outside_allocator_mib"] + memory["torch_max_reserved_mib"]
            )
        assert record["results"][mode]["framework_runtime"]["device_name"]


@pytest.mark.gpu
def test_fp16_runs_on_the_gpu(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            *QUICK,
            "device=cuda",
            "framework.fp16=true",
            "seq=128",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert records(sweep_dir)[0]["environment"]["fp16"] is True
