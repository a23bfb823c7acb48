"""NVIDIA GPUs through NVML (the nvidia-ml-py package): inventory, and a GPU memory figure that
means the same thing wherever it is measured.

Every function degrades to ``None`` / an empty result where there is no driver, so CPU-only
machines work; nothing here imports a framework. NVML numbers devices in PCI bus order; CUDA's
order can differ, so workers run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and
:func:`visible_device_handle` maps the first entry of ``CUDA_VISIBLE_DEVICES`` (an index or a
``GPU-``/``MIG-`` UUID) to its NVML handle.

**The GPU figure** (:func:`gpu_memory`) is what the worker process holds at its peak during the
timed calls, as the CPU figure is for resident memory: the CUDA context and everything else
outside the framework's allocator (loaded kernels, library handles), plus the allocator's peak
reservation over those calls. The allocator's peak is exact (its counters are reset just before
the timed calls). What lies outside it is taken to be constant over the timed calls, since the
cold call and the warm-up have already loaded every kernel and handle the step uses (not yet
checked on a GPU), so it is measured once, after the timed calls: the process's total then minus
the allocator's reservation then. No sampling thread competes with the calls, and a release by
the allocator during them does not hide its peak. The process's total comes from, in
order (``headline_source``):

- ``nvml_process``: NVML's figure for the worker's pid, where NVML lists it;
- ``nvml_device_delta``: the device's memory in use minus its use just before the worker
  initialised CUDA, where NVML cannot see the pid (a container with its own pid namespace, MIG):
  right on a GPU that no other process allocates on meanwhile; a total below what the allocator
  holds shows that one did, and is not used;
- ``allocator_peak``: without either, the allocator's peak alone, without the CUDA context.

PyTorch reports its reservation now and at its peak. TensorFlow reports only the memory its
tensors use; its pool (grown on demand, never shrunk) is the process's total after the calls.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from ..record import MemorySource
from ..units import MIB

__all__ = [
    "device_used_mib",
    "gpu_inventory",
    "gpu_memory",
    "nvml",
    "peak_increase_mib",
    "process_used_mib",
    "visible_device_handle",
]


def nvml() -> Tuple[Optional[Any], Optional[str]]:
    """(the initialised pynvml module, None) or (None, why NVML is unavailable)."""
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a dependency
        return None, f"nvidia-ml-py is not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded: no GPU here
        return None, f"NVML unavailable: {type(exc).__name__}: {exc}"
    return pynvml, None


def visible_device_handle(pynvml: Any, visible: Optional[str] = None) -> Any:
    """NVML handle of the device CUDA calls 0 under ``CUDA_VISIBLE_DEVICES`` (PCI bus order)."""
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = (visible or "").split(",")[0].strip()
    if not first:
        if visible is not None and visible.strip() == "":
            raise RuntimeError("CUDA_VISIBLE_DEVICES is empty: no GPU is visible")
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    if first.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(first))
    return pynvml.nvmlDeviceGetHandleByUUID(first)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_inventory() -> Dict[str, Any]:
    """The old tool's GPU keys (num_gpus, gpu, gpu_ram_mb, gpu_power_watts,
    gpu_performance_state) plus driver and CUDA driver versions, for the visible device."""
    pynvml, why = nvml()
    if pynvml is None:
        return {"num_gpus": 0, "nvml": why}
    try:
        handle = visible_device_handle(pynvml)
        cuda_driver = pynvml.nvmlSystemGetCudaDriverVersion()
        return {
            "num_gpus": pynvml.nvmlDeviceGetCount(),
            "gpu": _text(pynvml.nvmlDeviceGetName(handle)),
            "gpu_ram_mb": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total / MIB),
            "gpu_power_watts": pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0,
            "gpu_performance_state": int(pynvml.nvmlDeviceGetPerformanceState(handle)),
            "gpu_uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
            "gpu_driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_version": f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
        }
    except Exception as exc:
        return {"num_gpus": 0, "nvml": f"NVML query failed: {type(exc).__name__}: {exc}"}
    finally:
        pynvml.nvmlShutdown()


def process_used_mib(pid: int) -> Dict[str, Optional[float]]:
    """GPU memory in use now: process ``pid``'s (``nvml_process_used_mib``: None where NVML does
    not list it, as in a container with its own pid namespace or under MIG) and the device's."""
    figures: Dict[str, Optional[float]] = {
        "nvml_process_used_mib": None,
        "nvml_device_used_mib": None,
    }
    pynvml, _ = nvml()
    if pynvml is None:
        return figures
    try:
        handle = visible_device_handle(pynvml)
        try:
            processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception:  # NotSupported / NoPermission (MIG without privileges): no figure
            processes = []
        for proc in processes:
            if proc.pid == pid and proc.usedGpuMemory is not None:
                figures["nvml_process_used_mib"] = proc.usedGpuMemory / MIB
        figures["nvml_device_used_mib"] = pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB
    except Exception:  # an NVML error on this device: what is known so far stands
        pass
    finally:
        pynvml.nvmlShutdown()
    return figures


def device_used_mib() -> Optional[float]:
    """The visible device's memory in use (all processes), or None without NVML."""
    pynvml, _ = nvml()
    if pynvml is None:
        return None
    try:
        return pynvml.nvmlDeviceGetMemoryInfo(visible_device_handle(pynvml)).used / MIB
    except Exception:  # an NVML error on this device: the figure is unknown
        return None
    finally:
        pynvml.nvmlShutdown()


# The allocator's figures (Backend.gpu_memory_peaks_mib): its peak over the timed calls, and
# what it holds from the device now (PyTorch only; TensorFlow's pool never shrinks).
_PEAK_KEYS = ("torch_max_reserved_mib", "tf_peak_mib")
_HELD_NOW_KEYS = ("torch_reserved_mib",)


# The allocator's peak of live tensors over the timed calls, and what they held at its reset.
_TENSOR_PEAK_AND_START = (
    ("torch_max_allocated_mib", "torch_allocated_at_reset_mib"),
    ("tf_peak_mib", "tf_current_at_reset_mib"),
)


def peak_increase_mib(allocator: Dict[str, float]) -> Optional[float]:
    """What the calls' tensors added on the GPU at their peak: activations and temporary
    workspaces, the weights and inputs (held when the calls start) left out. The GPU's
    counterpart of the CPU's ``peak_increase_anon_mib``; None without the allocator's figures."""
    for peak, start in _TENSOR_PEAK_AND_START:
        if allocator.get(peak) is not None and allocator.get(start) is not None:
            return allocator[peak] - allocator[start]
    return None


def gpu_memory(
    allocator: Dict[str, float], pid: int, device_before_mib: Optional[float]
) -> Dict[str, Any]:
    """MemoryResult's GPU fields, ``headline_mib`` and ``headline_source``, after the timed calls.

    ``allocator``: the backend's figures (reset before the timed calls); ``pid``: the worker;
    ``device_before_mib``: :func:`device_used_mib` before the worker initialised CUDA.
    """
    fields: Dict[str, Any] = {**allocator, **process_used_mib(pid)}
    fields["nvml_device_before_mib"] = device_before_mib
    fields["gpu_peak_increase_mib"] = peak_increase_mib(allocator)
    peak = next(allocator[k] for k in _PEAK_KEYS if k in allocator)
    held_now = next((allocator[k] for k in _HELD_NOW_KEYS if k in allocator), None)
    floor = peak if held_now is None else held_now  # the process holds at least this now
    total, source = fields["nvml_process_used_mib"], MemorySource.nvml_process
    device_now = fields["nvml_device_used_mib"]
    if total is None and device_now is not None and device_before_mib is not None:
        total, source = device_now - device_before_mib, MemorySource.nvml_device_delta
        if total < floor:
            fields["gpu_note"] = (
                f"the device's use grew by {total:.0f} MiB, less than the {floor:.0f} MiB the "
                "allocator holds: another process freed GPU memory meanwhile; not used"
            )
            total = None
    elif total is None:
        fields["gpu_note"] = "NVML shows neither this process nor the device's use"
    if total is None:
        fields.update(headline_mib=peak, headline_source=MemorySource.allocator_peak.value)
        return fields
    fields["gpu_held_mib"] = total
    if held_now is None:
        headline = total  # the pool never shrinks: what it holds now, it held at the peak
    else:
        fields["gpu_outside_allocator_mib"] = total - held_now
        headline = total - held_now + peak
    fields.update(headline_mib=headline, headline_source=source.value)
    return fields
