"""memory_limit_mib on resident memory, and how a worker ended (sweeper.measure.limits).

Real processes where this machine allows: workers started here, limited by the same function the
worker calls (``apply_memory_limit``) and watched by the same object the runner uses
(``WorkerWatch``); a cgroup made and a kernel OOM kill produced wherever this process may create
a memory cgroup (skipped, and said so, where it may not). The classifier's other branches run on
faked counters, and cgroup discovery on faked /proc and cgroupfs trees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweeper.measure import limits
from sweeper.measure.limits import (
    METHOD_CGROUP_V1,
    METHOD_CGROUP_V2,
    METHOD_WATCHDOG,
    ExitEvidence,
    WorkerWatch,
    apply_memory_limit,
    classify_exit,
    memory_cgroup,
    oom_kill_counters,
)
from sweeper.record import MemoryLimit, Mode, ModeResult, Status
from tests.helpers import REPO

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cgroups and /proc are Linux's"
)

# A stand-in for the worker: built (torch imported, a few MiB of "model"), limited by the
# worker's own function, reports through its result file as the worker does, then runs the
# framework's intra-op pool with 64 threads and, if asked, allocates and touches GRAB_MIB.
WORKER = textwrap.dedent(
    """
    import ctypes, json, mmap, os, re, sys, time
    from pathlib import Path
    import torch
    from sweeper.fileio import write_json_atomic
    from sweeper.measure.limits import apply_memory_limit
    from sweeper.record import Mode, ModeResult, Status

    result_path, allowance, use_cgroup, grab_mib, hold_s, after_s, unseen = sys.argv[1:8]
    result_path, hold_s, after_s = Path(result_path), float(hold_s), float(after_s)
    model = torch.randn(1024, 1024)  # 4 MiB of weights
    result = ModeResult(mode=Mode.inference, phase="measure")
    result.memory_limit = apply_memory_limit(
        float(allowance), os.getppid(), use_cgroup=use_cgroup == "1"
    )

    def grab():
        size = int(grab_mib) << 20
        if not size:
            return
        area = mmap.mmap(-1, size)
        buffer = (ctypes.c_char * size).from_buffer(area)
        ctypes.memset(ctypes.addressof(buffer), 1, size)  # every page resident
        end = time.perf_counter() + hold_s
        while time.perf_counter() < end:
            pass
        del buffer
        area.close()  # gone again: only the high-water mark saw it
        result_path.with_suffix(".spike-over").touch()
        time.sleep(after_s)

    if unseen == "1":
        # Before the watchdog can look at all: it learns the pid and the limit from the result
        # file, written below. So no sample can fall inside the spike, whatever the timing.
        grab()
    write_json_atomic(result_path, result.to_dict())
    time.sleep(0.05)  # the watchdog's first look, as a worker's cold call would give it

    torch.set_num_threads(64)
    for _ in range(20):
        (model @ model).sum()  # a 1024^2 matmul: every thread of the pool takes part
    threads = int(re.search(r"Threads:\\s+(\\d+)", Path("/proc/self/status").read_text())[1])
    if unseen != "1":
        grab()
    result.status, result.phase = Status.ok, "done"
    result.extra["threads"] = threads
    write_json_atomic(result_path, result.to_dict())
    """
)
ALLOWANCE_MIB = 64


def run_worker(
    tmp_path,
    allowance,
    use_cgroup,
    grab_mib=0,
    hold_s=1.0,
    after_s=0.1,
    interval_s=None,
    unseen=False,
):
    """(returncode, result, verdict) of a stand-in worker run as the runner runs one.
    ``unseen``: the worker grabs ``grab_mib`` and frees it before it reports its limit, so
    before the watchdog's first sample."""
    result_path = tmp_path / "worker.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "USE_TF": "0"}
    args = [result_path, allowance, int(use_cgroup), grab_mib, hold_s, after_s, int(unseen)]
    watch = WorkerWatch(result_path, allowance, interval_s or limits.WATCHDOG_INTERVAL_S)
    with watch:
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, *map(str, args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    result = ModeResult.from_dict(json.loads(result_path.read_text()))
    return proc, result, watch.verdict(proc.returncode, result)


def _skip_without_cgroup(result, use_cgroup):
    if use_cgroup and result.memory_limit.method == METHOD_WATCHDOG:
        pytest.skip(f"no memory cgroup can be made here: {result.memory_limit.no_cgroup}")


@pytest.mark.parametrize("use_cgroup", [True, False], ids=["cgroup", "watchdog"])
def test_a_64_thread_pool_runs_under_a_small_allowance(tmp_path, use_cgroup):
    # RLIMIT_AS (before) counted each thread's 8 MiB stack and 64 MiB malloc arena: 64 threads
    # could not start under a 64 MiB allowance, and the cell failed as error.
    proc, result, verdict = run_worker(tmp_path, ALLOWANCE_MIB, use_cgroup)
    _skip_without_cgroup(result, use_cgroup)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert verdict is None and result.status is Status.ok
    assert result.extra["threads"] >= 65  # the pool's 64 and the main thread
    limit = result.memory_limit
    assert limit.allowance_mib == ALLOWANCE_MIB
    if use_cgroup:
        assert limit.method in (METHOD_CGROUP_V1, METHOD_CGROUP_V2)
        assert limit.cgroup_oom_kills == 0 and limit.cgroup_peak_mib < ALLOWANCE_MIB
        assert not Path(limit.cgroup).exists()  # removed once the worker ended
    else:
        assert limit.method == METHOD_WATCHDOG and limit.no_cgroup == "not tried"
        assert limit.limit_rss_mib == pytest.approx(limit.baseline_rss_mib + ALLOWANCE_MIB)
        assert limit.baseline_rss_mib < limit.watchdog_highest_mib < limit.limit_rss_mib


@pytest.mark.parametrize("use_cgroup", [True, False], ids=["cgroup", "watchdog"])
def test_an_allocation_over_the_allowance_ends_as_oom(tmp_path, use_cgroup):
    proc, result, verdict = run_worker(tmp_path, ALLOWANCE_MIB, use_cgroup, grab_mib=256)
    _skip_without_cgroup(result, use_cgroup)
    assert proc.returncode == -signal.SIGKILL
    status, error = verdict
    assert status is Status.oom, error
    assert error.startswith(f"memory_limit_mib={ALLOWANCE_MIB} exceeded during phase measure: ")
    assert error.endswith(f"raise memory_limit_mib (now {ALLOWANCE_MIB}), or lower batch or seq")
    limit = result.memory_limit
    if use_cgroup:
        assert limit.cgroup_oom_kills == 1 and "the kernel's OOM killer ended it" in error
        assert not Path(limit.cgroup).exists()
    else:
        assert "the RSS watchdog ended the worker" in error
        reached = float(error.split("resident memory reached ")[1].split(" MiB")[0])
        assert reached > limit.limit_rss_mib


def test_the_watchdog_catches_a_spike_between_two_samples(tmp_path):
    # A 256 MiB spike of a few tens of ms, freed again before the watchdog's first sample (when
    # the worker's import and matmuls timed it, a sample once fell inside it in a full run),
    # then 3 s of quiet: the worker is ended after the spike is gone, by the high-water mark
    # that kept it.
    proc, result, verdict = run_worker(
        tmp_path,
        ALLOWANCE_MIB,
        use_cgroup=False,
        grab_mib=256,
        hold_s=0.001,
        after_s=3,
        interval_s=0.5,
        unseen=True,
    )
    assert (tmp_path / "worker.spike-over").exists()  # it was killed once the spike was over
    assert proc.returncode == -signal.SIGKILL
    assert verdict[0] is Status.oom and "(VmHWM)" in verdict[1]
    reached = float(verdict[1].split("resident memory reached ")[1].split(" MiB")[0])
    # The spike's 256 MiB over the baseline (which the reset left as the mark), within the
    # kilobytes the process gives back meanwhile.
    assert reached > result.memory_limit.baseline_rss_mib + 250


CRASH = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from sweeper.fileio import write_json_atomic
    from sweeper.record import Mode, ModeResult
    write_json_atomic(Path(sys.argv[1]), ModeResult(Mode.inference, phase="measure").to_dict())
    number = int(sys.argv[4])
    if number:
        os.kill(os.getpid(), number)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGSEGV, signal.SIGABRT])
def test_a_worker_ended_by_another_signal_is_killed_with_its_name(tmp_path, sig):
    result_path = tmp_path / "worker.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with WorkerWatch(result_path, None) as watch:
        code = subprocess.run(
            [sys.executable, "-c", CRASH, str(result_path), "0", "0", str(int(sig))], env=env
        ).returncode
    result = ModeResult.from_dict(json.loads(result_path.read_text()))
    result.worker_log = "worker-inference.log"
    status, error = watch.verdict(code, result)
    assert code == -sig and status is Status.killed
    assert error.startswith(
        f"the worker was killed by {sig.name} (signal {int(sig)}) during phase measure; "
    )
    assert error.endswith("see worker-inference.log")


# A sweep's Hydra process in a memory cgroup of its own (as a container's limit would put it),
# without memory_limit_mib: its worker outgrows the cgroup and the kernel OOM-kills it.
SWEEP_IN_A_SMALL_CGROUP = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from pathlib import Path
    from sweeper.measure.limits import WorkerWatch, apply_memory_limit
    from sweeper.record import Mode, ModeResult
    box = apply_memory_limit(96, os.getpid())  # moves this process into a 96 MiB cgroup
    print(json.dumps({"box": box.to_dict()}), flush=True)
    if box.cgroup is None:
        sys.exit(0)
    result_path = Path(sys.argv[1])
    worker = (
        "import ctypes, mmap, sys; from pathlib import Path;"
        "from sweeper.fileio import write_json_atomic; from sweeper.record import *;"
        "write_json_atomic(Path(sys.argv[1]), ModeResult(Mode.inference, phase='measure')"
        ".to_dict()); size = 512 << 20; area = mmap.mmap(-1, size);"
        "buffer = (ctypes.c_char * size).from_buffer(area);"
        "ctypes.memset(ctypes.addressof(buffer), 1, size)"
    )
    with WorkerWatch(result_path, None) as watch:
        code = subprocess.run([sys.executable, "-c", worker, str(result_path)]).returncode
    result = ModeResult.from_dict(json.loads(result_path.read_text()))
    verdict = watch.verdict(code, result)
    print(json.dumps({"code": code, "verdict": verdict, "counter": watch.evidence().oom_counter}))
    """
)


def test_a_real_kernel_oom_kill_is_oom_and_a_sigkill_by_hand_is_killed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", SWEEP_IN_A_SMALL_CGROUP, str(tmp_path / "worker.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    box = MemoryLimit.from_dict(lines[0]["box"])
    if box.cgroup is None:
        pytest.skip(f"no memory cgroup can be made here: {box.no_cgroup}")
    Path(box.cgroup).rmdir()  # the "sweep" has ended: its cgroup is empty
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, (status, error) = lines[1]["code"], lines[1]["verdict"]
    assert code == -signal.SIGKILL
    assert status == "oom", error
    assert error.startswith(
        "the kernel's OOM killer ended the worker (SIGKILL) during phase measure (the sweep's "
        "cgroup's memory."
    )
    assert lines[1]["counter"].startswith(f"{box.cgroup}/memory.")  # the sweep's own cgroup

    # The same death by hand: SIGKILL, and no OOM kill counted anywhere.
    result_path = tmp_path / "by-hand.json"
    with WorkerWatch(result_path, None) as watch:
        code = subprocess.run(
            [sys.executable, "-c", CRASH, str(result_path), "0", "0", str(int(signal.SIGKILL))],
            env=env,
        ).returncode
    result = ModeResult.from_dict(json.loads(result_path.read_text()))
    evidence = watch.evidence()
    if evidence.oom_kills:
        pytest.skip("another process was OOM-killed meanwhile; the counters cannot tell")
    status, error = watch.verdict(code, result)
    assert status is Status.killed
    assert error.startswith(
        "the worker was killed by SIGKILL during phase measure, not by the kernel's OOM killer ("
    )


# -- the classifier on faked counters --------------------------------------------------------


def watchdog_limit(**changes) -> MemoryLimit:
    values = dict(
        allowance_mib=300,
        method=METHOD_WATCHDOG,
        baseline_rss_mib=410.0,
        watch_field="VmHWM",
        limit_rss_mib=710.0,
    )
    return MemoryLimit(**{**values, **changes})


def cgroup_limit(**changes) -> MemoryLimit:
    values = dict(
        allowance_mib=300,
        method=METHOD_CGROUP_V2,
        baseline_rss_mib=410.0,
        cgroup="/sys/fs/cgroup/user.slice/sweeper-1-2",
        cgroup_oom_kills=1,
        cgroup_peak_mib=300.0,
    )
    return MemoryLimit(**{**values, **changes})


KILL = -int(signal.SIGKILL)


@pytest.mark.parametrize(
    "returncode, finished, evidence, expected",
    [
        (0, True, ExitEvidence(), None),
        (1, False, ExitEvidence(), None),  # exited without a result: the runner says error
        (KILL, True, ExitEvidence(oom_kills=0, oom_counter="/proc/vmstat"), None),
        (
            KILL,
            False,
            ExitEvidence(oom_kills=0, oom_counter="/proc/vmstat"),
            (
                Status.killed,
                "the worker was killed by SIGKILL during phase measure, not by the kernel's OOM "
                "killer (no oom_kill in /proc/vmstat while it ran)",
            ),
        ),
        (
            KILL,
            False,
            ExitEvidence(oom_kills=2, oom_counter="/proc/vmstat"),
            (
                Status.oom,
                "the kernel's OOM killer ended the worker (SIGKILL) during phase measure "
                "(/proc/vmstat: oom_kill +2 while it ran): the machine or its container ran out "
                "of memory; lower batch or seq, free memory, or set memory_limit_mib to end such "
                "a cell before the machine runs short",
            ),
        ),
        (
            KILL,
            False,
            ExitEvidence(),
            (
                Status.killed,
                "the worker was killed by SIGKILL during phase measure; whether by the kernel's "
                "OOM killer is unknown: no OOM counter is readable here (/proc/vmstat, the "
                "memory cgroup); `dmesg` would say",
            ),
        ),
        (
            KILL,
            False,
            ExitEvidence(limit=watchdog_limit(), watchdog_rss_mib=742.4),
            (
                Status.oom,
                "memory_limit_mib=300 exceeded during phase measure: resident memory reached "
                "742 MiB (VmHWM), over the limit of 710 MiB (the built model's 410 MiB + 300); "
                "the RSS watchdog ended the worker; raise memory_limit_mib (now 300), or lower "
                "batch or seq",
            ),
        ),
        (
            KILL,
            False,
            # The sweep's counters moved too (another cell's OOM kill): the worker's own
            # cgroup is the more specific witness.
            ExitEvidence(limit=cgroup_limit(), oom_kills=1, oom_counter="/proc/vmstat"),
            (
                Status.oom,
                "memory_limit_mib=300 exceeded during phase measure: the worker added 300 MiB to "
                "the built model's 410 MiB resident (about 710 MiB in all) and its cgroup's limit "
                "stopped it: the kernel's OOM killer ended it (its cgroup's memory.events: "
                "oom_kill 1); raise memory_limit_mib (now 300), or lower batch or seq",
            ),
        ),
        (
            KILL,
            False,
            ExitEvidence(limit=cgroup_limit(cgroup_peak_mib=120.0)),
            (
                Status.oom,
                "the kernel's OOM killer ended the worker (SIGKILL) during phase measure (its "
                "cgroup's memory.events: oom_kill +1 while it ran): the machine or its "
                "container ran out of memory; lower batch or seq, free memory, or set "
                "memory_limit_mib to end such a cell before the machine runs short",
            ),
        ),
        (
            KILL,
            False,
            ExitEvidence(
                limit=cgroup_limit(cgroup_oom_kills=0), oom_kills=1, oom_counter="/proc/vmstat"
            ),
            (
                Status.killed,
                "the worker was killed by SIGKILL during phase measure, not by the kernel's OOM "
                "killer (no oom_kill in its cgroup's memory.events while it ran)",
            ),
        ),
        (
            KILL,
            False,
            ExitEvidence(
                oom_kills=1, oom_counter="/sys/fs/cgroup/memory/docker/abc/memory.oom_control"
            ),
            (
                Status.oom,
                "the kernel's OOM killer ended the worker (SIGKILL) during phase measure (the "
                "sweep's cgroup's memory.oom_control: oom_kill +1 while it ran): the machine or "
                "its container ran out of memory; lower batch or seq, free memory, or set "
                "memory_limit_mib to end such a cell before the machine runs short",
            ),
        ),
    ],
)
def test_classify_exit(returncode, finished, evidence, expected):
    assert classify_exit(returncode, "measure", finished, evidence) == expected


# -- cgroup discovery and creation on faked trees ------------------------------------------


def fake_proc(tmp_path, cgroup_lines, mount_lines, vmstat="oom_kill 7\n"):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("\n".join(cgroup_lines) + "\n")
    (proc / "self" / "mountinfo").write_text("\n".join(mount_lines) + "\n")
    (proc / "vmstat").write_text(f"pgfault 12\n{vmstat}")
    return proc


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_cgroup_v2_a_sibling_cgroup_with_the_allowance_as_its_limit(tmp_path):
    fs = tmp_path / "cgroup2"
    own = fs / "user.slice" / "app.scope"
    own.mkdir(parents=True)
    (own / "memory.max").write_text("max\n")
    (own / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 4\n")
    dead = fs / "user.slice" / f"sweeper-{_dead_pid()}-17"  # left by a sweep killed with -9
    alive = fs / "user.slice" / f"sweeper-{os.getpid()}-18"  # another running sweep's
    dead.mkdir()
    alive.mkdir()
    proc = fake_proc(
        tmp_path,
        ["0::/user.slice/app.scope"],
        [f"35 24 0:30 / {fs} rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate"],
    )
    assert memory_cgroup(proc / "self") == (limits._V2, own)
    assert oom_kill_counters(proc) == {str(own / "memory.events"): 4, str(proc / "vmstat"): 7}

    limit = apply_memory_limit(100, owner_pid=4242, proc_self=proc / "self")
    made = fs / "user.slice" / f"sweeper-4242-{os.getpid()}"
    assert limit.method == METHOD_CGROUP_V2 and limit.cgroup == str(made)
    assert (made / "memory.max").read_text() == str(100 << 20)
    assert (made / "cgroup.procs").read_text() == str(os.getpid())
    assert not dead.exists() and alive.exists()


def test_cgroup_v1_a_child_cgroup_in_a_containers_hierarchy(tmp_path):
    fs = tmp_path / "memory"
    own = fs / "job"  # the mount's root is the container's folder /docker/abc
    own.mkdir(parents=True)
    (own / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    proc = fake_proc(
        tmp_path,
        ["5:cpuacct,cpu:/docker/abc", "4:memory:/docker/abc/job", "0::/"],
        [
            f"40 30 0:35 /docker/abc {tmp_path / 'cpu'} rw - cgroup cgroup rw,cpu,cpuacct",
            f"41 30 0:36 /docker/abc {fs} rw,nosuid - cgroup cgroup rw,memory",
            f"42 30 0:37 / {tmp_path / 'unified'} rw - cgroup2 cgroup2 rw",
        ],
    )
    assert memory_cgroup(proc / "self") == (limits._V1, own)
    limit = apply_memory_limit(100, owner_pid=4242, proc_self=proc / "self")
    made = own / f"sweeper-4242-{os.getpid()}"
    assert limit.method == METHOD_CGROUP_V1 and limit.cgroup == str(made)
    assert (made / "memory.limit_in_bytes").read_text() == str(100 << 20)


def test_without_a_memory_controller_the_watchdog_is_used_and_says_why(tmp_path):
    fs = tmp_path / "cgroup2"  # a container's namespace root: no memory.max, no parent to use
    fs.mkdir()
    proc = fake_proc(
        tmp_path,
        ["0::/"],
        [f"35 24 0:30 / {fs} rw - cgroup2 cgroup2 rw"],
        vmstat="",
    )
    assert memory_cgroup(proc / "self") is None
    assert oom_kill_counters(proc) == {}
    limit = apply_memory_limit(100, owner_pid=4242, proc_self=proc / "self")
    assert limit.method == METHOD_WATCHDOG and limit.cgroup is None
    assert limit.no_cgroup == "OSError: no memory cgroup controller found for this process"
    assert limit.watch_field in ("VmHWM", "VmRSS")
    assert limit.limit_rss_mib == pytest.approx(limit.baseline_rss_mib + 100)


def test_killed_fails_the_command_and_a_limit_round_trips_through_the_record():
    assert Status.killed.failed and Status.oom.failed and not Status.skipped.failed
    assert Status.error.severity < Status.killed.severity < Status.oom.severity
    result = ModeResult(mode=Mode.inference, status=Status.killed, memory_limit=cgroup_limit())
    again = ModeResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.status is Status.killed and again.memory_limit == cgroup_limit()
    # A record of the RLIMIT_AS days keeps its key, written back unchanged.
    old = {"mode": "inference", "status": "oom", "address_space_limit_mib": 3000.0}
    assert ModeResult.from_dict(old).to_dict()["address_space_limit_mib"] == 3000.0
