"""GPU code paths: what the CPU can test (NVML device mapping, guards), and real GPU runs marked
``gpu`` (``make test-gpu`` on a machine with a CUDA GPU)."""

from __future__ import annotations

import pytest

from sweeper.measure import gpu
from tests.helpers import QUICK, TINY_BERT, records, run_sweeper


class FakeNvml:
    """Records which NVML look-up the mapping used."""

    def __init__(self):
        self.calls = []

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802 - NVML's name
        self.calls.append(("index", index))
        return f"handle-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid):  # noqa: N802
        self.calls.append(("uuid", uuid))
        return f"handle-{uuid}"


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
        allocator = "torch_max_allocated_mib" if framework == "pt" else "tf_peak_mib"
        assert memory[allocator] > 0
        assert memory["nvml_process_used_mib"] >= memory[allocator]
        assert memory["headline_mib"] == memory["nvml_process_used_mib"]
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
