"""Peak resident memory of this process, read from the kernel's own high-water mark.

Linux keeps ``VmHWM``, the largest resident set the process ever had, updated on every page
fault; writing ``5`` to ``/proc/self/clear_refs`` resets it to the current RSS (Linux >= 4.0).
So "reset, run, read ``VmHWM``" is the exact peak over the run: a spike of any length is caught,
with no sampling thread to miss it or to steal a core. The old tool polled RSS every 0.5 s.

Where the reset is not available (no procfs, or a kernel that refuses it), the peak of the whole
process (``ru_maxrss``) is returned instead and :func:`peak_method` says so; each cell runs in a
fresh process, so that figure still belongs to one cell only (and the record says which method).
"""

from __future__ import annotations

import re
import resource
import sys

from ..units import MIB

__all__ = [
    "METHOD_LIFETIME",
    "METHOD_RESET",
    "peak_rss_mib",
    "reset_peak",
    "rss_mib",
    "rss_parts_mib",
]

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as handle:
            match = re.search(rf"^{field}:\s+(\d+) kB", handle.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_mib() -> float:
    """Resident memory now, in MiB."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib / 1024
    import psutil  # non-Linux fallback

    return psutil.Process().memory_info().rss / MIB


def rss_parts_mib() -> dict:
    """Resident memory now by kind: anonymous (heap, weights, activations) and file-backed
    (mapped library code: its size depends on the page cache, so it varies between installs)."""
    parts = {}
    for field, key in (("RssAnon", "rss_anon_mib"), ("RssFile", "rss_file_mib")):
        kib = _status_kib(field)
        parts[key] = None if kib is None else kib / 1024
    return parts


def reset_peak() -> bool:
    """Set the kernel's peak-RSS mark to the current RSS; False where that is impossible."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak resident memory since the last :func:`reset_peak` (or since the process started)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    return maxrss / MIB if sys.platform == "darwin" else maxrss / 1024


METHOD_RESET = "VmHWM after reset via /proc/self/clear_refs"
METHOD_LIFETIME = "peak of the cell's whole fresh process (no reset available here)"
