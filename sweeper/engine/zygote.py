"""One framework import per sweep, and one model build per model: processes that only fork.

The Hydra process imports no framework. The first cell that needs, say, PyTorch on the CPU
starts ``python -m sweeper.engine.zygote`` with that cell's worker environment; the zygote imports
the framework backend (torch or TensorFlow, and transformers) and then does nothing but fork:
each measurement runs in a fresh child of it, so no cell after the first pays the import.

Where the backend allows it (``Backend.fork_after_build``: PyTorch on the CPU), the zygote also
forks a *builder* per model and mode: a child that builds the model (no input, no forward pass)
and then forks one fresh child per cell of that model. Every cell's process starts from the same
never-used state, so its figures do not depend on the cells before it, and no cell after the
first of its model pays the build. The zygote keeps at most one builder per mode (inference,
training): a different model replaces it, which bounds the memory held to one model of each.

Where the backend cannot fork after a build but shares weights (``Backend.weights_snapshots``:
TensorFlow), the zygote instead forks a *snapshot maker* per model and mode: a child that builds
the model, drawing its random weights, writes them to a memory file (memfd) the zygote holds,
and exits. Each cell's worker, forked from the zygote, then builds the model from that file
rather than drawing the weights again. One snapshot per mode, replaced by another model's.

Protocol (JSON lines, every message carries the request's ``id``): the client writes
``{"id", "spec", "result", "log", "tmp_dir", "build"}`` (``build``: null, or ``{"key", "log"}``
to run the cell in a builder for that key); the zygote answers ``{"id", "pid"}`` once the child
runs (with ``"builder": {...}`` facts when a builder forked it), then ``{"id", "pid",
"returncode"}`` when it has ended (negative: killed by that signal, as ``subprocess`` reports it),
or ``{"id", "unsafe": why}`` when a fork would not be safe. Any other message, a message that is
not JSON, a wrong id or a zygote that does not answer in time is a protocol error: the client
closes the zygote (and with it its builder and children) and forgets it.

Lifetime rules: nothing framework-specific runs in the zygote (no op, no model, no device: CUDA
must not be initialised before a fork); before every fork the zygote and the builder check that
no thread was started since they were ready (a forked child inherits no threads but their
locks), else they refuse and the client falls back to ``spawn``. Zygotes, builders and workers
die with their parent (PR_SET_PDEATHSIG) and ignore Ctrl-C, which the Hydra process handles.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any, Dict, NoReturn, Optional, Tuple

__all__ = ["ForkUnsafe", "Zygote", "ZygoteError", "close_all", "get_zygote", "main"]

# A fork takes milliseconds; a zygote that has not answered by then is stuck or gone.
FORK_TIMEOUT_S = 60.0
# After SIGKILL a process ends at once unless the kernel is stuck on it (D state).
END_AFTER_KILL_S = 60.0
# Importing a framework takes seconds; this bounds a zygote that hangs while importing.
READY_TIMEOUT_S = 600.0


def _threads() -> int:
    """Threads of this process, native ones included (a BLAS pool, a framework runtime)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def fork_hazard(ready_threads: int) -> Optional[str]:
    """Why forking now would be unsafe, or None.

    ``ready_threads``: the threads this process had when it became ready. The import leaves
    only thread pools that survive a fork (OpenBLAS's, which registers fork handlers;
    tests/test_zygote.py checks that an import starts no other); a thread started after that
    (a library starting a pool lazily) would be missing in the child while its locks are held.
    """
    python_threads = threading.active_count()
    if python_threads > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        return f"{python_threads - 1} Python thread(s) running ({names})"
    now = _threads()
    if now > ready_threads:
        return f"{now} threads, {ready_threads} when ready: something started a thread pool"
    return None


def _freeze_heap() -> None:
    """Leave every object made so far (the imports: about 400,000) out of later garbage
    collections, here and in every child forked from now on.

    Without this, a child's first full collection walks them all and, by touching each one,
    copies every page of the parent's heap into the child: 0.25 s measured here, paid by the
    cell's build or, worse, inside a timed call.
    """
    gc.collect()
    gc.freeze()


def _send(out: IO[bytes], message: Dict[str, Any]) -> None:
    out.write((json.dumps(message) + "\n").encode())
    out.flush()


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _redirect(log_path: str) -> None:
    """Point stdin at /dev/null and stdout/stderr at ``log_path``: the pipes are not ours."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)


def _exit(code: int) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


# ------------------------------------------------------------------------------------------------
# Server side: the zygote (python -m sweeper.engine.zygote FRAMEWORK PARENT_PID) and its builders


def _start_child(request: Dict[str, Any], log: str) -> Dict[str, Any]:
    """In a child just forked: log to ``log``, die with the parent; the request's spec."""
    _redirect(log)
    from .worker import die_with_parent

    die_with_parent(os.getppid())
    return json.loads(Path(request["spec"]).read_text())


def _worker(request: Dict[str, Any], built: Any = None, weights: Any = None) -> None:
    """In a forked child: become the worker of one measurement, then exit."""
    code = 1
    try:
        spec = _start_child(request, request["log"])
        from .worker import run

        run(spec, Path(request["result"]), built=built, weights=weights)
        code = 0
    except BaseException:  # the worker records its own failures; this is a bug of ours
        traceback.print_exc()
    finally:
        _exit(code)


def _fork_worker(
    out: IO[bytes],
    request: Dict[str, Any],
    extra: Dict[str, Any],
    built: Any = None,
    weights: Any = None,
) -> None:
    """Fork a worker for ``request``; report its pid, wait, report its exit."""
    pid = os.fork()
    if pid == 0:
        _worker(request, built, weights)
    _send(out, {"id": request["id"], "pid": pid, **extra})
    _, status = os.waitpid(pid, 0)
    _send(out, {"id": request["id"], "pid": pid, "returncode": _returncode(status)})


def _builder(
    request: Dict[str, Any], requests: IO[bytes], out: IO[bytes], ready_threads: int
) -> None:
    """In a child forked by the zygote: build the request's model once, then fork its cells.

    ``ready_threads``: the zygote's threads when it was ready. The build must not add any (the
    backend builds on one thread for this), else every cell is refused as unsafe.
    """
    code = 1
    try:
        spec = _start_child(request, request["build"]["log"])
        from .worker import build

        try:
            built = build(spec, for_fork=True)
        except BaseException as exc:
            from ..frameworks import NoForkAfterBuild

            refused = isinstance(exc, NoForkAfterBuild)  # the framework's, whatever the model
            if not refused:
                traceback.print_exc()
            _send(
                out,
                {
                    "build_failed": str(exc) if refused else f"{type(exc).__name__}: {exc}",
                    "framework_refuses": refused,
                },
            )
            _exit(1)
        _freeze_heap()
        facts = {
            "shared": True,
            "pid": os.getpid(),
            "log": request["build"]["log"],
            "built_in": str(Path(request["spec"]).parent),
            **built.facts(),
        }
        _send(out, {"built": facts})
        while True:
            if request is None:
                line = requests.readline()
                if not line:
                    break
                request = json.loads(line)
            hazard = fork_hazard(ready_threads)
            if hazard:
                _send(out, {"id": request["id"], "unsafe": f"builder: {hazard}"})
            else:
                _fork_worker(out, request, {}, built)
            request = None
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        _exit(code)


class _Builder:
    """The zygote's handle on one builder: its key, pid and pipes."""

    def __init__(self, request: Dict[str, Any], ready_threads: int) -> None:
        self.key = request["build"]["key"]
        self.log = request["build"]["log"]
        self.cells = 0
        self.facts: Dict[str, Any] = {}
        self.framework_refuses = False  # the backend builds no model before a fork, any model
        to_builder_r, to_builder_w = os.pipe()
        from_builder_r, from_builder_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(to_builder_w)
            os.close(from_builder_r)
            requests = os.fdopen(to_builder_r, "rb")
            _builder(request, requests, os.fdopen(from_builder_w, "wb", 0), ready_threads)
        os.close(to_builder_r)
        os.close(from_builder_w)
        self.requests = os.fdopen(to_builder_w, "wb", 0)
        self.messages = os.fdopen(from_builder_r, "rb")

    def _next(self) -> Optional[Dict[str, Any]]:
        line = self.messages.readline()
        return json.loads(line) if line else None

    def serve(self, request: Dict[str, Any], out: IO[bytes], first: bool) -> Optional[str]:
        """Run ``request`` in a child of this builder and relay its messages to ``out``.

        Returns None, or why the builder could not run it (its build failed: a backend that
        cannot build before a fork says so; or it died before forking). The caller then forks
        an ordinary worker, which builds the model itself (and records a build error itself).
        The first request is the one the builder was started with.
        """
        if first:
            message = self._next()
            if message is None or "built" not in message:
                message = message or {}
                self.framework_refuses = bool(message.get("framework_refuses"))
                return message.get("build_failed", "the builder died while building")
            self.facts = message["built"]
        else:
            try:
                self.requests.write((json.dumps(request) + "\n").encode())
            except BrokenPipeError:
                return "the builder had exited"
        message = self._next()
        if message is None:
            return "the builder died before forking"
        if "pid" in message:
            self.cells += 1
            builder = {**self.facts, "new": first, "cells_served": self.cells}
            _send(out, {**message, "builder": builder})
            message = self._next()
            if message is None:  # the builder died under its child, which died with it
                message = {"id": request["id"], "returncode": -signal.SIGKILL}
        _send(out, message)
        return None

    def close(self) -> None:
        for handle in (self.requests, self.messages):
            try:
                handle.close()
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)


class _Snapshot:
    """The zygote's weights snapshot of one model (backends with ``weights_snapshots``).

    A child forked for the first cell of the model builds it, drawing the weights, writes them
    to a memory file the zygote holds, and exits; every cell's worker then builds the model
    from that file. The memory goes when the zygote closes the file (another model, or the
    zygote's end, kill -9 included) and the last worker holding it has ended.
    """

    def __init__(self, request: Dict[str, Any]) -> None:
        self.key = request["build"]["key"]
        self.cells = 0
        self.weights: Any = None
        self.facts: Dict[str, Any] = {}
        self.failed: Optional[str] = None
        self.fd = -1
        try:
            self.fd = os.memfd_create(f"sweeper-weights-{request['build']['slot']}")
        except (AttributeError, OSError) as exc:  # not Linux, or a kernel before 3.17
            self.failed = f"no memory file for a weights snapshot ({exc})"
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _snapshot_maker(request, self.fd, os.fdopen(write_end, "wb", 0))
        os.close(write_end)
        with os.fdopen(read_end, "rb") as messages:
            line = messages.readline()
        os.waitpid(pid, 0)
        message = json.loads(line) if line else {}
        if "made" not in message:
            self.failed = message.get("failed", "the process making the snapshot died")
            self.close()  # kept, empty, so that later cells of the model do not try again
            return
        from ..frameworks import WeightsSnapshot

        self.weights = WeightsSnapshot(fd=self.fd, variables=message["variables"])
        self.facts = {
            "shared": True,
            "via": "weights snapshot",
            "pid": pid,
            "log": request["build"]["log"],
            "built_in": str(Path(request["spec"]).parent),
            **message["made"],
        }

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _snapshot_maker(request: Dict[str, Any], fd: int, out: IO[bytes]) -> NoReturn:
    """In a child forked by the zygote: build the request's model, write its weights to ``fd``,
    report (the snapshot's variables, or why not) and exit."""
    code = 1
    try:
        spec = _start_child(request, request["build"]["log"])
        from .worker import make_snapshot

        try:
            weights, facts = make_snapshot(spec, fd)
        except BaseException as exc:
            from ..frameworks import NoWeightsSnapshot

            if not isinstance(exc, NoWeightsSnapshot):
                traceback.print_exc()
            why = str(exc) if isinstance(exc, NoWeightsSnapshot) else f"{type(exc).__name__}: {exc}"
            _send(out, {"failed": why})
        else:
            _send(out, {"made": facts, "variables": weights.variables})
            code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        _exit(code)


def _serve_from_snapshot(
    request: Dict[str, Any], out: IO[bytes], snapshots: Dict[str, _Snapshot]
) -> None:
    """Run ``request`` in a worker that builds its model from the slot's snapshot (made now
    if the slot holds another model's or none); if none can be made, from its own draw."""
    slot, key = request["build"]["slot"], request["build"]["key"]
    snapshot = snapshots.get(slot)
    if snapshot is not None and snapshot.key != key:
        snapshots.pop(slot).close()  # another model: release this one first
        snapshot = None
    first = snapshot is None
    if snapshot is None:
        snapshot = snapshots[slot] = _Snapshot(request)
    if snapshot.failed:  # the cell draws its own weights (and records a build error itself)
        _fork_worker(out, request, {"builder": {"shared": False, "why": snapshot.failed}})
        return
    snapshot.cells += 1
    facts = {**snapshot.facts, "new": first, "cells_served": snapshot.cells}
    _fork_worker(out, request, {"builder": facts}, weights=snapshot.weights)


def serve(framework: str, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep's process stops us on Ctrl-C
    from ..frameworks import load
    from .worker import die_with_parent  # also imports what every child needs but the framework

    die_with_parent(parent_pid)
    tic = time.perf_counter()
    backend = load(framework)  # the one import this sweep pays for this framework
    import_s = time.perf_counter() - tic
    _freeze_heap()
    ready_threads = _threads()
    out = sys.stdout.buffer
    _send(out, {"ready": True, "import_s": import_s, "threads": ready_threads})
    builders: Dict[str, _Builder] = {}  # one per mode
    snapshots: Dict[str, _Snapshot] = {}  # one per mode, where the backend shares weights
    no_builders: Optional[str] = None  # why this framework builds no model before a fork
    for line in sys.stdin.buffer:
        request = json.loads(line)
        hazard = fork_hazard(ready_threads)
        if hazard:
            _send(out, {"id": request["id"], "unsafe": f"zygote: {hazard}"})
            continue
        build = request.get("build")
        if build and backend.weights_snapshots:
            _serve_from_snapshot(request, out, snapshots)
            continue
        if build and no_builders:
            _fork_worker(out, request, {"builder": {"shared": False, "why": no_builders}})
            continue
        if build:
            slot = build["slot"]
            builder = builders.get(slot)
            if builder is not None and builder.key != build["key"]:
                builders.pop(slot).close()  # another model: release this one first
                builder = None
            first = builder is None
            if first:
                builder = builders[slot] = _Builder(request, ready_threads)
            why = builder.serve(request, out, first)
            if why is None:
                continue
            if builder.framework_refuses:
                no_builders = why  # later cells go straight to a worker of their own
            builders.pop(slot).close()
            _fork_worker(out, request, {"builder": {"shared": False, "why": why}})
            continue
        _fork_worker(out, request, {})


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    serve(argv[0], int(argv[1]))
    return 0


# ------------------------------------------------------------------------------------------------
# Client side (in the Hydra process)


class ZygoteError(RuntimeError):
    """The zygote broke its protocol, could not start or died; it has been closed."""


class ForkUnsafe(RuntimeError):
    """The zygote refused to fork (a thread was started after its import); use spawn."""


class Zygote:
    """A running zygote for one framework and one worker environment."""

    def __init__(
        self,
        framework: str,
        env: Dict[str, str],
        log_path: Path,
        command: Optional[list] = None,
    ) -> None:
        """``command``: what to start instead of ``python -m sweeper.engine.zygote`` (tests)."""
        self.log_path = log_path
        self._buffer = b""
        self._next_id = 0
        command = command or [sys.executable, "-m", "sweeper.engine.zygote", framework]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                bufsize=0,
            )
        ready = self._read(READY_TIMEOUT_S, what="its import")
        if not ready.get("ready"):
            self._fail(f"the {framework} zygote did not start: {ready}")
        self.import_s: float = ready["import_s"]
        self.threads: int = ready["threads"]

    def _fail(self, why: str) -> NoReturn:
        self.close()
        raise ZygoteError(f"{why}; see {self.log_path}")

    def _read(self, timeout_s: float, what: str, request_id: Optional[int] = None) -> dict:
        """The next message; anything unexpected closes the zygote and raises ZygoteError.

        Reads the raw pipe with its own buffer: a buffered reader could hold a second message
        that select() would then never report.
        """
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0.0))
            if not ready:
                raise TimeoutError(what)
            chunk = os.read(fd, 65536)
            if not chunk:
                self._fail(f"the zygote exited while waiting for {what}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            self._fail(f"the zygote wrote something that is not a message: {line[:200]!r}")
        if not isinstance(message, dict):
            self._fail(f"the zygote wrote something that is not a message: {line[:200]!r}")
        if request_id is not None and message.get("id") != request_id:
            self._fail(f"the zygote answered request {message.get('id')}, expected {request_id}")
        return message

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(
        self,
        spec: Path,
        result: Path,
        log: Path,
        timeout_s: float,
        build: Optional[Dict[str, Any]] = None,
    ) -> Tuple[int, bool, Dict[str, Any]]:
        """Run one worker: (returncode, timed_out, builder facts). Waiting blocks in select.

        ``build``: ``{"key", "slot", "log"}`` to run the cell in a builder of that model.
        Raises ForkUnsafe if the zygote refuses to fork, ZygoteError on any protocol error
        (the zygote is then closed).
        """
        assert self.proc.stdin is not None
        self._next_id += 1
        request_id = self._next_id
        request = {
            "id": request_id,
            "spec": str(spec),
            "result": str(result),
            "log": str(log),
            "build": build,
        }
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
        except BrokenPipeError:
            self._fail("the zygote exited")
        started = time.monotonic()
        try:
            # A builder builds before it forks: that wait is part of the cell's time budget.
            forked = self._read(timeout_s if build else FORK_TIMEOUT_S, "a fork", request_id)
        except TimeoutError:
            if build:
                self.close()  # the build outlasted the cell's budget: end it with the zygote
                return -signal.SIGKILL, True, {}
            self._fail(f"the zygote did not fork within {FORK_TIMEOUT_S:g} s")
        if "unsafe" in forked:
            raise ForkUnsafe(forked["unsafe"])
        if "pid" not in forked:
            self._fail(f"the zygote answered {forked} instead of a pid")
        pid = forked["pid"]
        builder = forked.get("builder") or {}
        try:
            ended = self._read(timeout_s - (time.monotonic() - started), "the worker", request_id)
            timed_out = False
        except TimeoutError:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                ended = self._read(END_AFTER_KILL_S, "the killed worker", request_id)
            except TimeoutError:
                self._fail(f"worker {pid} did not end within {END_AFTER_KILL_S:g} s of SIGKILL")
            timed_out = True
        if "returncode" not in ended or ended.get("pid", pid) != pid:
            self._fail(f"the zygote answered {ended} instead of worker {pid}'s exit")
        return ended["returncode"], timed_out, builder

    def close(self) -> None:
        """Kill the zygote; its builders and workers die with it (PR_SET_PDEATHSIG)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


_ZYGOTES: Dict[tuple, Zygote] = {}


def get_zygote(framework: str, env: Dict[str, str], log_path: Path) -> Tuple[Zygote, bool]:
    """(the zygote for this framework and worker environment, whether this call started it)."""
    key = (framework, tuple(sorted(env.items())))
    zygote = _ZYGOTES.get(key)
    if zygote is not None and zygote.alive():
        return zygote, False
    _ZYGOTES.pop(key, None)
    zygote = Zygote(framework, env, log_path)
    _ZYGOTES[key] = zygote
    return zygote, True


def forget(zygote: Zygote) -> None:
    """Close ``zygote`` and drop it from the cache: the next cell starts a fresh one."""
    zygote.close()
    for key, cached in list(_ZYGOTES.items()):
        if cached is zygote:
            del _ZYGOTES[key]


def close_all() -> None:
    """Close every zygote (and so every builder and worker): on interrupt and at exit."""
    for zygote in list(_ZYGOTES.values()):
        zygote.close()
    _ZYGOTES.clear()


if __name__ == "__main__":
    sys.exit(main())
