"""The zygote's protocol cannot drift: every error path closes the zygote and it is forgotten;
forks happen only while no thread was started since the import (issue 8.3)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sweeper.engine import zygote as zygote_module
from sweeper.engine.zygote import ForkUnsafe, Zygote, ZygoteError, fork_hazard, get_zygote

FAKE = Path(__file__).parent / "data" / "fake_zygote.py"


def fake(tmp_path: Path, scenario: str) -> Zygote:
    command = [sys.executable, str(FAKE), scenario]
    return Zygote("pt", dict(os.environ), tmp_path / "zygote.log", command=command)


def run_once(zygote: Zygote, tmp_path: Path, timeout_s: float = 5.0):
    paths = (tmp_path / "spec.json", tmp_path / "result.json", tmp_path / "worker.log")
    return zygote.run(*paths, timeout_s=timeout_s)


def test_a_well_behaved_zygote_runs_workers_with_matching_ids(tmp_path):
    zygote = fake(tmp_path, "ok")
    assert run_once(zygote, tmp_path) == (0, False, {})
    assert run_once(zygote, tmp_path) == (0, False, {})  # the second request has id 2
    assert zygote.alive()
    zygote.close()


@pytest.mark.parametrize(
    "scenario, message",
    [
        ("garbage", "wrote something that is not a message: b'Some library printed this"),
        ("wrong_id", "answered request 2, expected 1"),
        ("no_fork", "did not fork within 0.5 s"),
        ("no_end", "did not end within 0.5 s of SIGKILL"),
    ],
)
def test_a_protocol_error_closes_the_zygote(tmp_path, monkeypatch, scenario, message):
    monkeypatch.setattr(zygote_module, "FORK_TIMEOUT_S", 0.5)
    monkeypatch.setattr(zygote_module, "END_AFTER_KILL_S", 0.5)
    zygote = fake(tmp_path, scenario)
    with pytest.raises(ZygoteError, match=message) as info:
        run_once(zygote, tmp_path, timeout_s=0.5)
    assert str(zygote.log_path) in str(info.value)
    assert not zygote.alive() and zygote.proc.returncode is not None  # killed, not leaked


def test_a_closed_zygote_is_replaced_by_a_fresh_one(tmp_path, monkeypatch):
    broken = fake(tmp_path, "garbage")
    env = {"A": "1"}
    monkeypatch.setitem(zygote_module._ZYGOTES, ("pt", tuple(env.items())), broken)
    with pytest.raises(ZygoteError):
        run_once(broken, tmp_path)
    started = []
    monkeypatch.setattr(zygote_module, "Zygote", lambda *args: started.append(args) or "fresh")
    assert get_zygote("pt", env, tmp_path / "log") == ("fresh", True)
    assert len(started) == 1


def test_a_refused_fork_says_why(tmp_path):
    zygote = fake(tmp_path, "unsafe")
    with pytest.raises(ForkUnsafe, match="1 Python thread"):
        run_once(zygote, tmp_path)
    zygote.close()


def test_fork_hazard_sees_python_threads_and_new_native_threads():
    assert fork_hazard(zygote_module._threads()) is None
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="pool-worker")
    thread.start()
    try:
        assert "1 Python thread(s) running (pool-worker)" in fork_hazard(zygote_module._threads())
    finally:
        stop.set()
        thread.join()
    ready = zygote_module._threads() - 1  # as if one native thread had started since
    assert "something started a thread pool" in fork_hazard(ready)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_the_framework_import_starts_no_thread_but_openblas(framework):
    """A zygote forks right after importing: an import that started a thread pool (other than
    OpenBLAS's, which has fork handlers and is off here) would hang every child."""
    code = (
        f"import os; from sweeper.frameworks import load; load({framework!r}); "
        "print(len(os.listdir('/proc/self/task')))"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["USE_TF" if framework == "pt" else "USE_TORCH"] = "0"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "1"
