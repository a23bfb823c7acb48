"""One framework import per sweep: a process that imports a framework once and forks a worker
per measurement.

The Hydra process imports no framework. The first cell that needs, say, PyTorch on the CPU
starts ``python -m sweeper.run.zygote`` with that cell's worker environment; the zygote imports
the framework backend (torch or TensorFlow, and transformers) and then does nothing but fork:
each measurement runs in a fresh child of it, with the same clean, never-used state, so a cell's
figures do not depend on the cells before it, and every cell after the first skips the import.
The first cell's wall time includes the zygote's start; its import time is recorded in every
record it served.

Protocol (JSON lines): the client writes ``{"spec", "result", "log"}`` to the zygote's stdin; the
zygote answers ``{"pid"}`` once the child runs, then ``{"pid", "returncode"}`` when it has ended
(negative: killed by that signal, as ``subprocess`` reports it). The child's stdout and stderr go
to the job's worker log. The zygote dies with the Hydra process (PR_SET_PDEATHSIG) and on EOF.

Nothing framework-specific runs in the zygote: no op, no device initialisation (CUDA must not be
initialised before a fork), no model; children do all of it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

__all__ = ["Zygote", "get_zygote", "main"]


# ------------------------------------------------------------------------------------------------
# Server side (python -m sweeper.run.zygote FRAMEWORK PARENT_PID)


def _child(request: Dict[str, str]) -> None:
    """In the forked child: become a worker for one measurement, then exit."""
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the zygote's request pipe is not the child's to read
        os.close(devnull)
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        from .worker import die_with_parent, run

        die_with_parent(os.getppid())
        spec = json.loads(Path(request["spec"]).read_text())
        run(spec, Path(request["result"]))
        code = 0
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(framework: str, parent_pid: int) -> None:
    from ..frameworks import load
    from .worker import die_with_parent  # also imports what every child needs but the framework

    die_with_parent(parent_pid)
    tic = time.perf_counter()
    load(framework)  # the one import this sweep pays for this framework
    import_s = time.perf_counter() - tic
    out = sys.stdout
    out.write(json.dumps({"ready": True, "import_s": import_s}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        out.write(json.dumps({"pid": pid, "returncode": returncode}) + "\n")
        out.flush()


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    serve(argv[0], int(argv[1]))
    return 0


# ------------------------------------------------------------------------------------------------
# Client side (in the Hydra process)


class ZygoteError(RuntimeError):
    """The zygote could not start or died; the message says where its log is."""


class Zygote:
    """A running zygote for one framework and one worker environment."""

    def __init__(self, framework: str, env: Dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._buffer = b""
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sweeper.run.zygote", framework, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                bufsize=0,
            )
        ready = self._read(timeout_s=600)
        if not ready or not ready.get("ready"):
            self.close()
            raise ZygoteError(f"the {framework} zygote did not start; see {log_path}")
        self.import_s: float = ready["import_s"]

    def _read(self, timeout_s: float) -> Optional[dict]:
        """The next message, or None on timeout; ZygoteError if the zygote is gone.

        Reads the raw pipe with its own buffer: a buffered reader could hold a second message
        that select() would then never report.
        """
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0.0))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ZygoteError(f"the zygote exited; see {self.log_path}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, spec: Path, result: Path, log: Path, timeout_s: float) -> Tuple[int, bool]:
        """Run one worker; return (returncode, timed_out). Waiting blocks in select: no spin."""
        assert self.proc.stdin is not None
        request = {"spec": str(spec), "result": str(result), "log": str(log)}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
        except BrokenPipeError as exc:
            raise ZygoteError(f"the zygote exited; see {self.log_path}") from exc
        started = time.monotonic()
        forked = self._read(timeout_s=60)
        if forked is None:
            raise ZygoteError(f"the zygote did not fork within 60 s; see {self.log_path}")
        pid = forked["pid"]
        remaining = timeout_s - (time.monotonic() - started)
        message = self._read(timeout_s=remaining)
        if message is not None:
            return message["returncode"], False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        ended = self._read(timeout_s=60)
        if ended is None:
            raise ZygoteError(f"worker {pid} did not end after SIGKILL; see {self.log_path}")
        return ended["returncode"], True

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_ZYGOTES: Dict[tuple, Zygote] = {}


def get_zygote(framework: str, env: Dict[str, str], log_path: Path) -> Tuple[Zygote, bool]:
    """(the zygote for this framework and worker environment, whether this call started it)."""
    key = (framework, tuple(sorted(env.items())))
    zygote = _ZYGOTES.get(key)
    if zygote is not None and zygote.alive():
        return zygote, False
    zygote = _ZYGOTES[key] = Zygote(framework, env, log_path)
    return zygote, True


if __name__ == "__main__":
    sys.exit(main())
