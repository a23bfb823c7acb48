"""The host-wide device locks (sweeper/engine/lock.py): exclusive and shared, gone with a killed
holder, logged and timed while waiting, off with lock=false, usable by every user.

Holders are separate processes, as other sweeps are: flock locks belong to open files, so a lock
held by another process is the case that matters. The two-sweeps-at-once test through the real
command line is in test_launchers.py (a basic and a submitit sweep started together).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeper.config.job import job_from_config
from sweeper.config.schema import Device
from sweeper.engine import lock
from sweeper.engine.lock import CPU_LOCK, DeviceLock, device_locks, hold, locks_for
from sweeper.record import Mode, ModeResult

# A lock holder in another process: takes the lock, says so, keeps it for HOLD_S or until killed.
HOLDER = """
import sys, time
from pathlib import Path
from sweeper.engine.lock import DeviceLock, hold
folder, name, exclusive, hold_s = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
holder = {"pid": __import__("os").getpid(), "user": "tester", "host": "here",
          "sweep": "/sweeps/other", "cell": "tiny-bert pt/cpu batch=1 seq=8 inference"}
with hold(Path(folder), DeviceLock(name, exclusive), holder):
    print("held", flush=True)
    time.sleep(hold_s)
"""


def start_holder(folder: Path, name: str = CPU_LOCK, exclusive: bool = True, hold_s: float = 60):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), name, "1" if exclusive else "0", str(hold_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def try_lock(folder: Path, name: str, exclusive: bool) -> bool:
    """Whether this process could take the lock right now (released again at once)."""
    fd = os.open(folder / f"{name}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "locks"


def test_an_exclusive_lock_excludes_everyone_and_a_shared_one_only_exclusive_holders(folder):
    holder = start_holder(folder, exclusive=True)
    try:
        assert not try_lock(folder, CPU_LOCK, exclusive=True)
        assert not try_lock(folder, CPU_LOCK, exclusive=False)
    finally:
        holder.kill()
        holder.wait()
    holder = start_holder(folder, exclusive=False)
    try:
        assert try_lock(folder, CPU_LOCK, exclusive=False)
        assert not try_lock(folder, CPU_LOCK, exclusive=True)
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_of_the_holder_frees_the_lock_at_once(folder):
    holder = start_holder(folder)
    assert not try_lock(folder, CPU_LOCK, exclusive=True)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with hold(folder, DeviceLock(CPU_LOCK), {"pid": os.getpid()}) as waited_s:
        assert waited_s < 0.5
    # The dead holder's text is still in the file: advice only, the flock decides.
    assert json.loads((folder / "cpu.lock").read_text())["pid"] == os.getpid()


def test_a_waiter_logs_who_holds_the_lock_and_measures_its_wait(folder, caplog):
    holder = start_holder(folder, hold_s=1.0)
    with caplog.at_level(logging.INFO, logger="sweeper.engine.lock"):
        with hold(folder, DeviceLock(CPU_LOCK), {"pid": os.getpid()}) as waited_s:
            pass
    holder.wait()
    assert 0.5 < waited_s < 30  # the holder let go after 1 s
    waiting = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(waiting) == 1
    assert waiting[0].startswith(
        f"waiting for the cpu lock held by pid {holder.pid} (user tester on here), sweep "
        "/sweeps/other, cell tiny-bert pt/cpu batch=1 seq=8 inference, since 20"
    )
    assert any(m.startswith("got the cpu lock after waiting") for m in caplog.messages)


def test_lock_files_and_folder_are_usable_by_every_user_whatever_the_umask(folder):
    old = os.umask(0o077)
    try:
        with hold(folder, DeviceLock("gpu-GPU-1"), {"pid": os.getpid()}):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o1777
    assert stat.S_IMODE((folder / "gpu-GPU-1.lock").stat().st_mode) == 0o666


def test_a_lock_folder_that_cannot_be_made_is_an_error_naming_it_and_the_fix(tmp_path):
    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "locks"
    with pytest.raises(lock.LockError) as raised:
        with hold(folder, DeviceLock(CPU_LOCK), {}):
            pass
    message = str(raised.value)
    assert message.startswith(f"cannot make the lock folder {folder} (")
    assert f"chmod 1777 {folder}), or set lock_dir to another" in message
    assert message.endswith("or lock=false")


def test_a_cpu_cell_holds_the_cpu_and_a_gpu_cell_its_gpu_then_the_cpu_shared(monkeypatch):
    assert locks_for(Device.cpu) == [DeviceLock("cpu", exclusive=True)]
    assert locks_for(Device.cuda, visible="GPU-5f1e,GPU-77aa") == [
        DeviceLock("gpu-GPU-5f1e", exclusive=True),
        DeviceLock("cpu", exclusive=False),
    ]
    # An index is looked up in NVML; without NVML the index names the lock.
    monkeypatch.setattr(lock, "nvml", lambda: (None, "no NVML here"))
    assert locks_for(Device.cuda, visible="1")[0].name == "gpu-index-1"
    assert lock.gpu_lock_name("MIG-GPU-5f1e/1/0") == "gpu-MIG-GPU-5f1e_1_0"


@pytest.fixture
def job(compose_config, folder):
    def _job(*overrides: str):
        overrides = [*overrides, f"lock_dir={folder}"]
        return job_from_config(compose_config(overrides), overrides)

    return _job


def test_device_locks_wait_for_the_holder_and_say_what_they_held(job, folder, tmp_path):
    holder = start_holder(folder, hold_s=1.0)
    with device_locks(job(), Mode.inference, tmp_path / "sweep" / "cell") as held:
        assert not try_lock(folder, CPU_LOCK, exclusive=False)  # held while the block runs
    holder.wait()
    assert try_lock(folder, CPU_LOCK, exclusive=True)  # and released after it
    result = ModeResult(mode=Mode.inference)
    held.annotate(result)
    assert result.lock_wait_s > 0.5 and result.locks == {"cpu": "exclusive"}
    assert result.started_utc <= result.finished_utc
    text = json.loads((folder / "cpu.lock").read_text())
    assert text["sweep"] == str(tmp_path / "sweep") and text["shared"] is False
    assert text["cell"] == "bert-base pt/cpu batch=8 seq=128 inference"


def test_lock_false_takes_no_lock_and_does_not_wait(job, folder, tmp_path):
    holder = start_holder(folder)
    try:
        tic = time.perf_counter()
        with device_locks(job("lock=false"), Mode.training, tmp_path / "cell") as held:
            pass
        assert time.perf_counter() - tic < 0.5
    finally:
        holder.kill()
        holder.wait()
    result = ModeResult(mode=Mode.training)
    held.annotate(result)
    assert result.lock_wait_s is None and result.locks is None
    assert result.started_utc is not None and result.finished_utc is not None


def test_lock_options_are_not_part_of_what_a_cell_measures(job, compose_config):
    base = job()
    assert job("lock=false").identity == base.identity
    assert job("lock_dir=/elsewhere").identity == base.identity
    assert base.config.lock is True
    # Nor of its folder's name: a resume with lock=false finds the same folders.
    cfg = compose_config(["seq=8", "lock=false", "lock_dir=/x"], return_hydra_config=True)
    assert cfg.hydra.job.override_dirname == "seq=8"


def test_a_relative_lock_dir_is_refused_before_anything_runs(tmp_path):
    from tests.helpers import run_sweeper

    proc = run_sweeper(["lock_dir=locks", "seq=8", "-m"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "lock_dir=locks must be an absolute path" in proc.stderr
    assert not list(tmp_path.rglob("record.json"))


def test_new_mode_fields_round_trip_and_old_records_stay_as_they_were():
    old = {"mode": "inference", "status": "ok", "error": None, "phase": "done", "phases_s": {}}
    assert ModeResult.from_dict(old).to_dict() == old
    new = {
        **old,
        "started_utc": "2026-11-30T03:04:06.828+00:00",
        "finished_utc": "2026-11-30T03:04:07.043+00:00",
        "lock_wait_s": 1.5,
        "locks": {"gpu-GPU-5f1e": "exclusive", "cpu": "shared"},
    }
    again = ModeResult.from_dict(new)
    assert again.lock_wait_s == 1.5 and again.locks["cpu"] == "shared"
    assert again.to_dict() == new


def test_time_spent_waiting_for_the_lock_does_not_count_against_timeout_s(
    job, tmp_path, monkeypatch
):
    """A cell that waited 50 s of its 60 s so far still has timeout_s - 10 s for its next mode."""
    from sweeper.engine import runner
    from sweeper.record import Record, Status

    given = {}

    def fake_worker(job, mode, job_dir, timeout_s):
        given[mode] = timeout_s
        return ModeResult(mode=mode, status=Status.ok, lock_wait_s=50.0)

    monkeypatch.setattr(runner, "_run_worker", fake_worker)
    cell = job("training=true", "timeout_s=1800")
    record = Record(cell=cell.cell, status=Status.ok, config=cell.config_dict)
    runner._measure(cell, tmp_path, record, tic=time.perf_counter() - 60)
    assert 1790 - 5 < given[Mode.training] <= 1790


def test_no_child_keeps_the_lock_after_its_holder_lets_go(folder):
    """Started programs never get the descriptor (close-on-exec), and a forked copy of it does
    not keep the lock once the holder releases it."""
    with hold(folder, DeviceLock(CPU_LOCK), {"pid": os.getpid()}):
        listing = subprocess.run(
            ["ls", "-l", "/proc/self/fd"], capture_output=True, text=True, close_fds=False
        ).stdout
        assert "cpu.lock" not in listing
        child = os.fork()
        if child == 0:  # a forked copy of the holder, with the descriptor, still running
            time.sleep(5)
            os._exit(0)
    try:
        assert try_lock(folder, CPU_LOCK, exclusive=True)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
