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
from typing import Optional, Tuple

from ..units import MIB

__all__ = [
    "METHOD_LIFETIME",
    "METHOD_RESET",
    "anon_peak_increase",
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


_PARTS = (("RssAnon", "rss_anon_mib"), ("RssFile", "rss_file_mib"), ("RssShmem", "rss_shmem_mib"))


def rss_parts_mib() -> dict:
    """Resident memory now by kind: anonymous (heap, weights, activations), file-backed (mapped
    library code: its size depends on the page cache, so it varies between installs) and shared
    memory (a memfd or tmpfs mapping). The three add up to ``VmRSS``."""
    parts = {}
    for field, key in _PARTS:
        kib = _status_kib(field)
        parts[key] = None if kib is None else kib / 1024
    return parts


def _not_anon(parts: Optional[dict]) -> Optional[float]:
    if not parts or any(parts.get(key) is None for _, key in _PARTS):
        return None
    return parts["rss_file_mib"] + parts["rss_shmem_mib"]


def anon_peak_increase(
    peak_mib: float, baseline: Optional[dict], reset: Optional[dict], end: Optional[dict]
) -> Tuple[Optional[float], Optional[float]]:
    """The anonymous memory the calls added at their peak, and how far it may be off (MiB).

    ``VmHWM`` counts every resident page, library code included: the calls map code that the
    build did not (a cell whose own build already ran that code maps less: 5 MiB less for a
    small BERT, measured), and how much depends on the page cache. The anonymous part alone
    (activations, workspaces, allocator caches) is what the cell's computation adds. The
    kernel keeps no high-water mark per kind, but the non-anonymous part is read when the mark
    is reset (``reset``) and after the calls (``end``). It grows as code is mapped and shrinks
    only under memory pressure or when a mapping is removed, so at the peak it lay between the
    two, and the anonymous peak is ``peak - non_anonymous`` within their difference. The figure
    returned takes the larger non-anonymous part (the lower bound); the second value is the
    difference: 0 when nothing was mapped during the calls (the usual case, since the cold call
    and the warm-up map the code). Relative to ``baseline``'s anonymous memory (model built,
    inputs made, nothing run). A mapping made and removed within the calls counts as anonymous,
    whatever its kind: it is memory the calls added. (None, None) where the parts are unknown.
    """
    not_anon = [_not_anon(reset), _not_anon(end)]
    if baseline is None or baseline.get("rss_anon_mib") is None or None in not_anon:
        return None, None
    increase = peak_mib - max(not_anon) - baseline["rss_anon_mib"]
    return increase, abs(not_anon[1] - not_anon[0])


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
