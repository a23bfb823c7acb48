"""Host-wide device locks: a cell measures only while no other cell on this host uses its device.

Two sweeps started on one machine, or a parallel launcher (joblib, ``submitit_local``, Ray on one
node), would otherwise time their cells side by side, each with a full thread pool, and report
contended times with tight confidence intervals. So the runner holds a lock per device around
each worker (:func:`device_locks`): everything that computes for a measurement, the zygote's
start (the framework import) when the worker starts one, the model build, the timed calls, runs
inside it. The Hydra process's own work (composing configs, the environment, the collector) and
its waiting are outside: they take milliseconds of CPU per cell.

The locks:

- ``cpu``: held *exclusively* by a CPU cell;
- ``gpu-<UUID>``: held exclusively by a GPU cell, for the device CUDA calls 0 under the job's
  ``CUDA_VISIBLE_DEVICES`` (NVML's UUID, so the name is the same whatever the numbering), and
  then ``cpu`` *shared*: a GPU cell's host thread launches its kernels, and a CPU cell driving
  every core would slow those launches, so no CPU cell measures beside a GPU cell; GPU cells on
  different GPUs run together (each needs about one core). Every sweep takes the GPU lock before
  the CPU lock, so no two sweeps can each hold what the other waits for. ``flock`` grants no
  order: a CPU cell can wait while GPU cells keep the shared lock taken in turn.

A lock is ``fcntl.flock`` on a file in ``lock_dir`` (conf/config.yaml), a folder every user's
sweeps share (made mode 1777 like /tmp; files mode 0666). The kernel releases a flock when the
last descriptor of it closes, so a holder killed by ``kill -9`` leaves no stale lock; descriptors
are close-on-exec, so no zygote or worker inherits one. The holder writes who it is (pid, user,
sweep folder, cell) into the file, so a waiter can log ``waiting for the cpu lock held by pid N
...``; that text is advice only, the flock is the lock. ``lock=false`` takes no lock at all.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional

from ..config.job import Job
from ..config.schema import Device
from ..measure.gpu import nvml, visible_device_handle
from ..record import Mode, ModeResult

__all__ = [
    "CPU_LOCK",
    "DeviceLock",
    "Held",
    "LockError",
    "describe_holder",
    "device_locks",
    "gpu_lock_name",
    "hold",
    "locks_for",
]

log = logging.getLogger(__name__)

CPU_LOCK = "cpu"
LOCK_DIR_MODE = 0o1777  # like /tmp: every user creates lock files, only their owner deletes them
LOCK_FILE_MODE = 0o666  # every user's sweeps open every lock file for writing
_HOLDER_MAX_BYTES = 4096  # holder text read back; ours is a few hundred bytes of JSON
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # MIG UUIDs of old drivers contain slashes


class LockError(RuntimeError):
    """A lock folder or file this user cannot use; the message names it and the fix."""


@dataclass(frozen=True)
class DeviceLock:
    """One lock a cell takes: its name (a file in lock_dir) and whether others may share it."""

    name: str
    exclusive: bool = True

    @property
    def kind(self) -> str:
        return "exclusive" if self.exclusive else "shared"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_lock_name(visible: Optional[str] = None) -> str:
    """``gpu-<UUID>`` of the device CUDA calls 0 under ``CUDA_VISIBLE_DEVICES``.

    A UUID entry is used as it is; an index is looked up in NVML; without NVML (the cell then
    fails before any worker starts) the index names the lock.
    """
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = (visible or "").split(",")[0].strip()
    uuid = first if first.startswith(("GPU-", "MIG-")) else None
    if uuid is None:
        pynvml, _ = nvml()
        if pynvml is not None:
            try:
                uuid = _text(pynvml.nvmlDeviceGetUUID(visible_device_handle(pynvml, visible)))
            except Exception:  # no such device: the cell's own checks report it
                uuid = None
            finally:
                pynvml.nvmlShutdown()
    return "gpu-" + _UNSAFE.sub("_", uuid or f"index-{first or 0}")


def locks_for(device: Device, visible: Optional[str] = None) -> List[DeviceLock]:
    """The locks a cell on ``device`` holds, in the order every sweep takes them."""
    if device is Device.cpu:
        return [DeviceLock(CPU_LOCK, exclusive=True)]
    return [DeviceLock(gpu_lock_name(visible), exclusive=True), DeviceLock(CPU_LOCK, False)]


# ------------------------------------------------------------------------------------------------
# One lock file


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _fix(folder: Path) -> str:
    return (
        f"every user's sweeps on this host need to write there (chmod 1777 {folder}), or set "
        "lock_dir to another absolute folder they all share, or lock=false"
    )


def _ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=LOCK_DIR_MODE, parents=True)
    except FileExistsError:
        return  # made by someone: its mode is theirs to choose
    except OSError as exc:
        raise LockError(f"cannot make the lock folder {folder} ({exc}); {_fix(folder)}") from exc
    os.chmod(folder, LOCK_DIR_MODE)  # mkdir's mode went through the umask


def _open(path: Path) -> int:
    """A read-write, close-on-exec descriptor of the lock file, made if missing.

    An existing file is opened without O_CREAT: with fs.protected_regular, Linux refuses O_CREAT
    on another user's file in a sticky folder even when its mode allows writing.
    """
    _ensure_folder(path.parent)
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LOCK_FILE_MODE)
        except FileExistsError:  # another sweep made it just now
            return os.open(path, flags)
        os.fchmod(fd, LOCK_FILE_MODE)  # the umask must not lock other users out
        return fd
    except PermissionError as exc:
        raise LockError(f"cannot open the lock file {path} ({exc}); {_fix(path.parent)}") from exc


def _read_holder(fd: int) -> Optional[Dict[str, object]]:
    try:
        data = json.loads(os.pread(fd, _HOLDER_MAX_BYTES, 0).decode())
    except (OSError, ValueError):  # empty, or being rewritten by a new holder
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: Optional[Mapping[str, object]]) -> str:
    """``pid N (user U on HOST), sweep S, cell C, since T`` from a lock file's holder text."""
    if not holder:
        return "another process (it has not written who it is)"
    text = f"pid {holder.get('pid')} (user {holder.get('user')} on {holder.get('host')})"
    for key in ("sweep", "cell", "since_utc"):
        if holder.get(key):
            text += f", {key.replace('_utc', '')} {holder[key]}"
    if holder.get("shared"):
        text += " (shared: perhaps with others)"
    return text


@contextlib.contextmanager
def hold(folder: Path, lock: DeviceLock, holder: Mapping[str, object]) -> Iterator[float]:
    """Hold ``lock`` (a file in ``folder``) for the block; yield the seconds spent waiting."""
    fd = _open(folder / f"{lock.name}.lock")
    try:
        operation = fcntl.LOCK_EX if lock.exclusive else fcntl.LOCK_SH
        tic = time.perf_counter()
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning(
                "waiting for the %s lock held by %s", lock.name, describe_holder(_read_holder(fd))
            )
            fcntl.flock(fd, operation)  # sleeps in the kernel until the holder lets go
            log.info("got the %s lock after waiting %.1f s", lock.name, time.perf_counter() - tic)
        waited_s = time.perf_counter() - tic
        text = json.dumps({**holder, "since_utc": _utc_now(), "shared": not lock.exclusive})
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        yield waited_s
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)  # also if a forked copy of the descriptor exists
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------
# A worker's locks


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


@dataclass
class Held:
    """What :func:`device_locks` held and when: written into the worker's ModeResult."""

    locks: Dict[str, str] = field(default_factory=dict)  # name -> exclusive | shared
    wait_s: Optional[float] = None  # None: lock=false
    started_utc: Optional[str] = None
    finished_utc: Optional[str] = None

    def annotate(self, result: ModeResult) -> None:
        result.started_utc, result.finished_utc = self.started_utc, self.finished_utc
        result.lock_wait_s = self.wait_s
        result.locks = dict(self.locks) if self.wait_s is not None else None


@contextlib.contextmanager
def device_locks(job: Job, mode: Mode, job_dir: Path) -> Iterator[Held]:
    """Hold the device locks of ``job`` (none with lock=false) around one worker.

    The yielded :class:`Held` gets the wait and the window (UTC) inside the locks.
    """
    config = job.config
    wanted = locks_for(config.device.name) if config.lock else []
    cell = job.cell
    holder = {
        "pid": os.getpid(),
        "user": _user(),
        "host": socket.gethostname(),
        "sweep": str(job_dir.parent),
        "cell": (
            f"{cell.model} {cell.framework}/{cell.device} batch={cell.batch_size} "
            f"seq={cell.sequence_length} {mode.value}"
        ),
    }
    held = Held()
    with contextlib.ExitStack() as stack:
        if config.lock:
            held.wait_s = 0.0
            for lock in wanted:
                held.wait_s += stack.enter_context(hold(Path(config.lock_dir), lock, holder))
                held.locks[lock.name] = lock.kind
        held.started_utc = _utc_now()
        try:
            yield held
        finally:
            held.finished_utc = _utc_now()
