"""``memory_limit_mib`` on resident memory, and how a worker ended: ``oom`` only when the kernel
or the limit says so, ``killed`` (with the signal) otherwise.

**The limit** is what a cell may add beyond its built model. Once the model is built the worker
calls :func:`apply_memory_limit`, which moves it into a memory cgroup of its own with that
allowance as its limit. Memory charged before the move stays with the old cgroup (cgroup v2
never moves charges; v1 does not by default, ``move_charge_at_immigrate=0``), so the new cgroup
counts exactly what the cell adds: activations, workspaces, the pages its threads touch. Thread
stacks and malloc arenas cost only the pages they touch, not the address space they reserve:
RLIMIT_AS, used before, counted 8 MiB of stack and up to 64 MiB of arena per thread, so a
64-thread pool needed 1.5 GiB of allowance just to start. The kernel checks every charge: over
the limit, once the cgroup's page cache is reclaimed, its OOM killer sends SIGKILL and counts
``oom_kill`` in the cgroup's ``memory.events`` (v2) or ``memory.oom_control`` (v1). Swap is
capped too, so the cell is ended rather than swapped out.

A cgroup needs write access to the hierarchy: v2, a sibling of the worker's cgroup under a
parent that delegates the memory controller (root, or a systemd-delegated subtree); v1, a child
of the worker's memory cgroup. Where that fails (an unprivileged container, a namespace root, no
memory controller) a **watchdog** in the Hydra process (:class:`WorkerWatch`) reads the worker's
``VmHWM`` every ``WATCHDOG_INTERVAL_S`` and sends SIGKILL once it passes the resident memory at
the build plus the allowance. It reads the high-water mark, not the current RSS, so a spike
between two samples is still seen at the next one; it cannot stop the spike (it ends the worker
up to one interval late, by when a cell can have faulted in a few tens of MiB more), and the
worker's own resets of the mark (before the cold call and the timed calls) erase at most one
interval of warm-up, whose calls are the timed calls again: a spike there comes back and is
caught. It stays out of the worker: no thread competes with the measured calls for the GIL.

**How a worker ended** (:func:`classify_exit`). A worker that wrote its final status ended by
itself. Else a signal ended it: SIGKILL is ``oom`` only with the kernel's word for it, an
``oom_kill`` counted while the worker ran, read from the most specific counter there is: the
worker's own cgroup (made by the limit), else this process's memory cgroup (the worker's, when
no limit moved it), else ``/proc/vmstat`` (the whole kernel). A cgroup's counter counts only its
own processes (v2: and its descendants'); ``/proc/vmstat`` counts every OOM kill on the host, so
on a shared host an unrelated OOM kill in the same seconds as a SIGKILL from elsewhere would be
taken for ours: two rare events at once, and the error says which counter moved. Any other signal
(SIGKILL without an OOM kill, SIGTERM, SIGSEGV, ...) is ``killed``, with the signal named.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..record import MemoryLimit, ModeResult, Status
from ..units import MIB
from .memory import reset_peak, rss_mib

__all__ = [
    "METHOD_CGROUP_V1",
    "METHOD_CGROUP_V2",
    "METHOD_WATCHDOG",
    "WATCHDOG_INTERVAL_S",
    "ExitEvidence",
    "WorkerWatch",
    "apply_memory_limit",
    "classify_exit",
    "memory_cgroup",
    "oom_kill_counters",
]

# One sample opens and reads /proc/PID/status (tens of microseconds: well under 1 % of a core at
# this rate). A thread faulting in fresh pages adds a few GB/s at most, so the watchdog ends a
# runaway cell within a few tens of MiB of its limit.
WATCHDOG_INTERVAL_S = 0.01
METHOD_CGROUP_V2 = "cgroup v2"
METHOD_CGROUP_V1 = "cgroup v1"
METHOD_WATCHDOG = "rss watchdog"
# A cgroup whose peak charge came this close to its limit hit it (the kernel reclaims first).
_AT_LIMIT_FRACTION = 0.98
_CGROUP_NAME = re.compile(r"^sweeper-(\d+)-(\d+)$")  # sweeper-<Hydra pid>-<worker pid>


# ------------------------------------------------------------------------------------------------
# cgroups


@dataclass(frozen=True)
class _Files:
    """The memory controller's file names in one cgroup version."""

    version: int
    limit: str
    swap: str  # v2: swap alone (set to 0); v1: memory + swap (set to the limit)
    events: str  # has a line "oom_kill N"
    peak: str


_V2 = _Files(2, "memory.max", "memory.swap.max", "memory.events", "memory.peak")
_V1 = _Files(
    1,
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "memory.oom_control",
    "memory.max_usage_in_bytes",
)


def _mounts(mountinfo: Path) -> List[Tuple[str, str, str, str]]:
    """(filesystem type, super options, root, mount point) of every cgroup mount."""
    mounts = []
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            mounts.append((tail[0], tail[2], fields[3], fields[4]))
    return mounts


def _under(root: str, mount_point: str, path: str) -> Optional[Path]:
    """The directory of cgroup ``path`` in a mount of hierarchy folder ``root``."""
    if root == "/":
        return Path(mount_point) / path.lstrip("/")
    if path == root or path.startswith(root.rstrip("/") + "/"):
        return Path(mount_point) / path[len(root) :].lstrip("/")
    return None


def memory_cgroup(proc_self: Path = Path("/proc/self")) -> Optional[Tuple[_Files, Path]]:
    """(the files of its version, the directory) of this process's memory cgroup, or None.

    cgroup v2 where its unified hierarchy has the memory controller (the cgroup then has
    ``memory.max``), else the v1 memory hierarchy (hybrid setups mount both).
    """
    try:
        mounts = _mounts(proc_self / "mountinfo")
        lines = (proc_self / "cgroup").read_text().splitlines()
    except OSError:
        return None
    found: Dict[int, Path] = {}
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        for fstype, options, root, mount_point in mounts:
            if hierarchy == "0" and controllers == "" and fstype == "cgroup2":
                directory = _under(root, mount_point, path)
                if directory is not None and (directory / _V2.limit).exists():
                    found[2] = directory
            elif "memory" in controllers.split(",") and fstype == "cgroup":
                if "memory" in options.split(","):
                    directory = _under(root, mount_point, path)
                    if directory is not None and directory.is_dir():
                        found[1] = directory
    if 2 in found:
        return _V2, found[2]
    if 1 in found:
        return _V1, found[1]
    return None


def _read_counter(path: Path, key: str) -> Optional[int]:
    """The value of line ``key N`` in a counters file (memory.events, /proc/vmstat), or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(rf"^{key} (\d+)$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _read_mib(path: Path) -> Optional[float]:
    try:
        return int(path.read_text().split()[0]) / MIB
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(parent: Path) -> None:
    """Remove empty cgroups that sweeps, since killed, left under ``parent``."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _CGROUP_NAME.match(entry.name)
        if match and not _alive(int(match.group(1))):
            try:
                entry.rmdir()  # refused (EBUSY) while a process is in it
            except OSError:
                pass


def _make_cgroup(allowance_mib: float, owner_pid: int, proc_self: Path) -> Tuple[_Files, Path]:
    """A new memory cgroup limited to ``allowance_mib``, with this process moved into it."""
    found = memory_cgroup(proc_self)
    if found is None:
        raise OSError("no memory cgroup controller found for this process")
    files, own = found
    parent = own.parent if files.version == 2 else own  # v2: no processes in inner cgroups
    _remove_stale(parent)
    path = parent / f"sweeper-{owner_pid}-{os.getpid()}"
    path.mkdir()
    try:
        limit_bytes = str(int(allowance_mib * MIB))
        (path / files.limit).write_text(limit_bytes)
        swap = path / files.swap
        if swap.exists():  # absent without swap accounting
            swap.write_text("0" if files.version == 2 else limit_bytes)
        (path / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        path.rmdir()
        raise
    return files, path


def _start_ticks(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat, the process's start time: tells it from a later one."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[19])


def apply_memory_limit(
    allowance_mib: float,
    owner_pid: int,
    use_cgroup: bool = True,
    proc_self: Path = Path("/proc/self"),
) -> MemoryLimit:
    """In the worker, model built: limit what it adds to ``allowance_mib``; say how.

    ``owner_pid`` (the Hydra process) names the cgroup, so a later sweep can tell a cgroup left
    by a dead sweep. ``use_cgroup=False`` goes straight to the watchdog (tests).
    """
    limit = MemoryLimit(
        allowance_mib=allowance_mib,
        method=METHOD_WATCHDOG,
        baseline_rss_mib=rss_mib(),
        pid=os.getpid(),
        pid_start_ticks=_start_ticks(os.getpid()),
    )
    if use_cgroup:
        try:
            files, path = _make_cgroup(allowance_mib, owner_pid, proc_self)
        except OSError as exc:
            limit.no_cgroup = f"{type(exc).__name__}: {exc}"
        else:
            limit.method = METHOD_CGROUP_V2 if files.version == 2 else METHOD_CGROUP_V1
            limit.cgroup = str(path)
            return limit
    else:
        limit.no_cgroup = "not tried"
    # The watchdog reads the high-water mark from here on, or the RSS where it cannot be reset.
    limit.watch_field = "VmHWM" if reset_peak() else "VmRSS"
    limit.limit_rss_mib = limit.baseline_rss_mib + allowance_mib
    return limit


# ------------------------------------------------------------------------------------------------
# The Hydra process's side of one worker


def oom_kill_counters(proc: Path = Path("/proc")) -> Dict[str, int]:
    """OOM-kill counters this process can read, most specific first: its memory cgroup's,
    then the kernel's (``/proc/vmstat``, Linux >= 4.13). Keys are the files read."""
    counters = {}
    found = memory_cgroup(proc / "self")
    if found is not None:
        files, own = found
        value = _read_counter(own / files.events, "oom_kill")
        if value is not None:
            counters[str(own / files.events)] = value
    value = _read_counter(proc / "vmstat", "oom_kill")
    if value is not None:
        counters[str(proc / "vmstat")] = value
    return counters


@dataclass
class ExitEvidence:
    """What the Hydra process knows about how a worker ended, beyond its exit status."""

    limit: Optional[MemoryLimit] = None  # as the worker applied it, completed by the watch
    watchdog_rss_mib: Optional[float] = None  # the reading on which the watchdog ended it
    oom_kills: Optional[int] = None  # OOM kills counted while it ran; None: no counter readable
    oom_counter: Optional[str] = None  # the file that counted them


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _fix(allowance_mib: float) -> str:
    return f"raise memory_limit_mib (now {allowance_mib:g}), or lower batch or seq"


def classify_exit(
    returncode: int,
    phase: str,
    finished: bool,
    evidence: ExitEvidence,
    log: Optional[str] = None,
) -> Optional[Tuple[Status, str]]:
    """(status, error) of a worker that did not end by itself; None when its own account stands
    (it exited, with or without a result: the caller tells those apart). ``finished``: the
    worker wrote its final status (a signal after that, at exit, does not undo its figures);
    ``log``: the worker's log, named in the error of a crash."""
    limit = evidence.limit
    if evidence.watchdog_rss_mib is not None and limit is not None:
        return Status.oom, (
            f"memory_limit_mib={limit.allowance_mib:g} exceeded during phase {phase}: resident "
            f"memory reached {evidence.watchdog_rss_mib:.0f} MiB ({limit.watch_field}), over the "
            f"limit of {limit.limit_rss_mib:.0f} MiB (the built model's "
            f"{limit.baseline_rss_mib:.0f} MiB + {limit.allowance_mib:g}); the RSS watchdog "
            f"ended the worker; {_fix(limit.allowance_mib)}"
        )
    if returncode >= 0 or finished:
        return None
    name = _signal_name(-returncode)
    if -returncode != signal.SIGKILL:
        return Status.killed, (
            f"the worker was killed by {name} (signal {-returncode}) during phase {phase}; "
            "the OOM killer sends only SIGKILL: a crash in native code (SIGSEGV, SIGBUS, "
            f"SIGABRT) or a signal from outside; see {log or 'the worker log'}"
        )
    own_cgroup = limit is not None and limit.cgroup and limit.cgroup_oom_kills is not None
    if own_cgroup:
        # The worker's own cgroup counts every OOM kill of it, whichever limit was hit.
        kills, counter = limit.cgroup_oom_kills, f"its cgroup's {_files(limit).events}"
    else:
        kills, counter = evidence.oom_kills, _counter_name(evidence.oom_counter)
    if kills is None:
        return Status.killed, (
            f"the worker was killed by SIGKILL during phase {phase}; whether by the kernel's OOM "
            "killer is unknown: no OOM counter is readable here (/proc/vmstat, the memory "
            "cgroup); `dmesg` would say"
        )
    if not kills:
        return Status.killed, (
            f"the worker was killed by SIGKILL during phase {phase}, not by the kernel's OOM "
            f"killer (no oom_kill in {counter} while it ran)"
        )
    if own_cgroup:
        added = limit.cgroup_peak_mib
        if added is None or added >= _AT_LIMIT_FRACTION * limit.allowance_mib:
            added = limit.allowance_mib if added is None else added
            return Status.oom, (
                f"memory_limit_mib={limit.allowance_mib:g} exceeded during phase {phase}: the "
                f"worker added {added:.0f} MiB to the built model's "
                f"{limit.baseline_rss_mib:.0f} MiB resident (about "
                f"{limit.baseline_rss_mib + added:.0f} MiB in all) and its cgroup's limit "
                f"stopped it: the kernel's OOM killer ended it ({counter}: oom_kill "
                f"{kills}); {_fix(limit.allowance_mib)}"
            )
    return Status.oom, (
        f"the kernel's OOM killer ended the worker (SIGKILL) during phase {phase} "
        f"({counter}: oom_kill +{kills} while it ran): the machine or its container ran out of "
        "memory; lower batch or seq, free memory, or set memory_limit_mib to end such a cell "
        "before the machine runs short"
    )


def _counter_name(path: Optional[str]) -> Optional[str]:
    """A counter file as errors name it: /proc/vmstat, or the sweep's cgroup's file."""
    if path is None or path.endswith("vmstat"):
        return path
    return f"the sweep's cgroup's {Path(path).name}"


def _files(limit: MemoryLimit) -> _Files:
    return _V2 if limit.method == METHOD_CGROUP_V2 else _V1


class WorkerWatch:
    """Around one worker, in the Hydra process: OOM counters before and after, the RSS watchdog
    while it runs (only where the worker reports that no cgroup holds it), the worker's cgroup
    read and removed after it ended, and :meth:`verdict` on how it ended.

    ``with WorkerWatch(result_path, allowance_mib) as watch: <run the worker>``; then
    ``watch.verdict(returncode, result)``. The worker reports its pid and limit through its
    result file (``memory_limit``), written before it measures.
    """

    def __init__(
        self,
        result_path: Path,
        allowance_mib: Optional[float],
        interval_s: float = WATCHDOG_INTERVAL_S,
    ) -> None:
        self.result_path = Path(result_path)
        self.allowance_mib = allowance_mib
        self.interval_s = interval_s
        self.limit: Optional[MemoryLimit] = None
        self.watchdog_rss_mib: Optional[float] = None
        self.highest_mib: Optional[float] = None
        self._before: Dict[str, int] = {}
        self._after: Dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._seen: Optional[tuple] = None  # the result file's identity when last read

    def __enter__(self) -> WorkerWatch:
        self._before = oom_kill_counters()
        if self.allowance_mib is not None:
            self._thread = threading.Thread(
                target=self._watch, name="sweeper-rss-watchdog", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._after = oom_kill_counters()
        if self.allowance_mib is not None and self.limit is None:
            self.limit = self._read_limit()
        if self.limit is not None and self.limit.cgroup:
            self._close_cgroup(self.limit)

    def _read_limit(self) -> Optional[MemoryLimit]:
        """The worker's ``memory_limit`` once its result file has one (written atomically: each
        version is a new file, and the one that adds ``memory_limit`` is longer)."""
        try:
            stat = self.result_path.stat()
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if seen == self._seen:
                return None
            self._seen = seen
            data = json.loads(self.result_path.read_text()).get("memory_limit")
        except (OSError, ValueError):
            return None
        return MemoryLimit.from_dict(data) if data else None

    def _watch(self) -> None:
        while self.limit is None:
            if self._stop.wait(self.interval_s):
                return
            self.limit = self._read_limit()
        limit = self.limit
        if limit.method != METHOD_WATCHDOG or limit.pid is None:
            return  # the kernel enforces a cgroup's limit
        status = Path(f"/proc/{limit.pid}/status")
        pattern = re.compile(rf"^{limit.watch_field}:\s+(\d+) kB", re.MULTILINE)
        while True:
            try:
                match = pattern.search(status.read_text())
            except OSError:
                return  # the worker has ended
            if match is None:
                return
            value_mib = int(match.group(1)) / 1024
            self.highest_mib = max(self.highest_mib or 0.0, value_mib)
            if value_mib > limit.limit_rss_mib:
                if _start_ticks(limit.pid) == limit.pid_start_ticks:  # not a reused pid
                    try:
                        os.kill(limit.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        return
                    self.watchdog_rss_mib = value_mib
                return
            if self._stop.wait(self.interval_s):
                return

    def _close_cgroup(self, limit: MemoryLimit) -> None:
        """Read the worker's cgroup's OOM kills and peak, then remove it (it is empty now)."""
        path = Path(limit.cgroup)
        files = _files(limit)
        limit.cgroup_oom_kills = _read_counter(path / files.events, "oom_kill")
        limit.cgroup_peak_mib = _read_mib(path / files.peak)
        try:
            path.rmdir()
        except OSError:
            pass  # still busy (a worker that did not end): a later sweep removes it

    def evidence(self) -> ExitEvidence:
        kills, counter = None, None
        for key, before in self._before.items():
            if key in self._after:
                kills, counter = self._after[key] - before, key
                break
        if self.limit is not None and self.highest_mib is not None:
            self.limit.watchdog_highest_mib = self.highest_mib
        return ExitEvidence(
            limit=self.limit,
            watchdog_rss_mib=self.watchdog_rss_mib,
            oom_kills=kills,
            oom_counter=counter,
        )

    def verdict(self, returncode: int, result: ModeResult) -> Optional[Tuple[Status, str]]:
        """:func:`classify_exit` for this worker; also puts what the watch saw into
        ``result.memory_limit``."""
        evidence = self.evidence()
        if evidence.limit is not None:
            result.memory_limit = evidence.limit
        finished = result.status is not None
        return classify_exit(returncode, result.phase, finished, evidence, result.worker_log)
