"""NVIDIA GPUs through NVML (the nvidia-ml-py package): inventory and memory in use.

Every function degrades to ``None`` / an empty result where there is no driver, so CPU-only
machines work; nothing here imports a framework. NVML numbers devices in PCI bus order; CUDA's
order can differ, so workers run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and
:func:`visible_device_handle` maps the first entry of ``CUDA_VISIBLE_DEVICES`` (an index or a
``GPU-``/``MIG-`` UUID) to its NVML handle.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from ..units import MIB

__all__ = ["gpu_inventory", "nvml", "process_used_mib", "visible_device_handle"]


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
    """GPU memory now: this process's (``nvml_process_used_mib``) and the device's in total."""
    pynvml, why = nvml()
    if pynvml is None:
        return {"nvml_process_used_mib": None, "nvml_device_used_mib": None}
    try:
        handle = visible_device_handle(pynvml)
        used = None
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                used = proc.usedGpuMemory / MIB
        return {
            "nvml_process_used_mib": used,
            "nvml_device_used_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB,
        }
    finally:
        pynvml.nvmlShutdown()
