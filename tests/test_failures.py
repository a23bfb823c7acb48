"""Sweeps that survive (issue 4): every failure kind is recorded and explained, the sweep goes on,
the exit status says something failed, and an interrupted sweep resumes with nothing lost."""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import QUICK, TINY_BERT, records, run_sweeper, start_sweeper, table_rows


def by_seq(found):
    return {r["cell"]["sequence_length"]: r for r in found}


def test_bad_cells_are_recorded_and_the_sweep_goes_on(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            *QUICK,
            "batch=1",
            "model.max_position_embeddings=16",
            "model.hidden_size=32,33",
            "seq=8,32",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    found = records(sweep_dir)
    assert len(found) == 4
    status = {(r["config"]["model"]["hidden_size"], r["cell"]["sequence_length"]): r for r in found}
    assert status[(32, 8)]["status"] == "ok"
    skipped = status[(32, 32)]
    assert skipped["status"] == "skipped"
    assert skipped["error"] == (
        "seq=32 exceeds the 16 positions of model tiny-bert; lower seq or raise the model's max "
        "positions (e.g. model.max_position_embeddings=32)"
    )
    assert skipped["results"] == {}
    heads = status[(33, 8)]
    assert heads["status"] == "error"
    assert "hidden_size=33 is not divisible by num_attention_heads=2" in heads["error"]
    # Found from the config alone: no worker was started for these cells.
    started = {p.parent.name for p in sweep_dir.rglob("worker-*.log")}
    assert started == {
        next(
            p.parent.name
            for p in sweep_dir.rglob("record.json")
            if json.loads(p.read_text())["status"] == "ok"
        )
    }
    # The tables show N/A, and the end of the output lists what did not succeed and why.
    assert "N/A" in proc.stdout
    assert "4 cells: " in proc.stdout and "1 ok" in proc.stdout and "2 skipped" in proc.stdout
    tail = proc.stdout.split("Cells that did not succeed")[1]
    assert tail.count("\n- ") == 3
    assert "- error: tiny-bert batch=1 seq=8 [pt/cpu]: model tiny-bert: hidden_size=33" in tail


def test_fp16_on_cpu_and_cuda_without_gpu_are_explained(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            "framework.fp16=true",
            "device=cpu,cuda",
            "seq=8",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    errors = {r["cell"]["device"]: r["error"] for r in records(sweep_dir)}
    assert errors["cpu"].startswith("framework.fp16=true needs device=cuda (device=cpu)")
    assert errors["cuda"].startswith("device=cuda but no NVIDIA GPU is visible (NVML unavailable")
    assert "run with device=cpu" in errors["cuda"]


def test_a_model_without_a_tensorflow_class(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            "framework=tf",
            "model=smollm_135m",
            "model.hidden_size=32",
            "model.num_hidden_layers=1",
            "model.num_attention_heads=2",
            "model.num_key_value_heads=1",
            "seq=8",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    (record,) = records(sweep_dir)
    assert record["status"] == "error"
    assert "has no TensorFlow base-model class for model_type=llama" in record["error"]
    assert record["error"].endswith("use framework=pt")


def test_any_other_exception_is_an_error_with_its_traceback_in_the_log(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            "model.hidden_act=no_such_activation",
            "seq=8",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    (record,) = records(sweep_dir)
    assert record["status"] == "error"
    assert record["error"].startswith("inference: KeyError:")
    assert "no_such_activation" in record["error"]
    job_dir = next(sweep_dir.rglob("record.json")).parent
    assert "Traceback (most recent call last)" in (job_dir / "worker-inference.log").read_text()
    # The job log and the console name the worker log; the traceback stays in the worker log.
    assert str(job_dir / "worker-inference.log") in (job_dir / "sweeper.log").read_text()


def test_running_out_of_memory_is_status_oom(tmp_path, sweep_dir):
    # Training logits: 16 x 512 x 30522 float32 = 954 MiB, over a 300 MiB allowance.
    proc = run_sweeper(
        [
            *TINY_BERT,
            "model.vocab_size=30522",
            "inference=false",
            "training=true",
            "batch=16",
            "seq=512",
            "memory_limit_mib=300",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    (record,) = records(sweep_dir)
    assert record["status"] == "oom", record["error"]
    # The limit is on resident memory (a cgroup, else the watchdog): the worker is ended, and the
    # error names the limit, the memory reached and the fix.
    assert record["error"].startswith(
        "training: memory_limit_mib=300 exceeded during phase measure: "
    ), record["error"]
    assert record["error"].endswith("raise memory_limit_mib (now 300), or lower batch or seq")
    limit = record["results"]["training"]["memory_limit"]
    assert limit["allowance_mib"] == 300
    assert limit["method"] in ("cgroup v2", "cgroup v1", "rss watchdog")
    if limit.get("cgroup"):  # the worker's own cgroup is removed once it has ended
        assert limit["cgroup_oom_kills"] == 1 and not Path(limit["cgroup"]).exists()


def _wait_for(condition, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.1)


def _is_sweeper_process(process: psutil.Process, hydra_pid: int, sweep_dir) -> bool:
    """A zygote, builder or worker of the sweep whose Hydra process was ``hydra_pid``: zygotes
    (and the builders and workers they fork, which keep their command line) name that pid;
    spawned workers name their spec file under ``sweep_dir``."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return False
    if "sweeper.engine.zygote" in command:
        return command[-1] == str(hydra_pid)
    return "sweeper.engine.worker" in command and str(sweep_dir) in " ".join(command)


def _workers(pid: int):
    """Measuring processes under ``pid``: spawned workers, or the leaves of a zygote's tree (a
    worker forked by the zygote itself or by one of its builders)."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    workers = []
    for process in descendants:
        try:
            command = " ".join(process.cmdline())
            forked = "sweeper.engine.zygote" in command and process.ppid() != pid
            if "sweeper.engine.worker" in command or (forked and not process.children()):
                workers.append(process)
        except psutil.Error:
            continue
    return workers


def test_a_worker_killed_by_sigkill_is_killed_not_oom(tmp_path, sweep_dir):
    # SIGKILL is also what the OOM killer sends: the kernel's OOM counters tell the two apart.
    proc = start_sweeper(
        [
            *TINY_BERT,
            "seq=8",
            "timing.min_time_s=60",
            "timing.max_time_s=120",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        tmp_path,
    )
    try:
        result = lambda: next(sweep_dir.rglob("worker-inference.json"), None)  # noqa: E731
        _wait_for(
            lambda: (
                result() is not None and json.loads(result().read_text()).get("phase") == "measure"
            )
        )
        (worker,) = _workers(proc.pid)
        worker.send_signal(signal.SIGKILL)  # by hand: no OOM kill is counted
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    (record,) = records(sweep_dir)
    assert record["status"] == "killed", record["error"]
    assert record["error"].startswith(
        "inference: the worker was killed by SIGKILL during phase measure, not by the kernel's "
        "OOM killer (no oom_kill in "
    ), record["error"]
    assert record["error"].endswith(" while it ran)")
    assert "killed: tiny-bert" in out


def test_a_hanging_cell_is_stopped_after_timeout_s(tmp_path, sweep_dir):
    # Sixty seconds of timed calls: the 1.5 s timeout (which starts once the framework is
    # imported) ends the cell first.
    proc = run_sweeper(
        [
            *TINY_BERT,
            "seq=8",
            "timeout_s=1.5",
            "timing.min_time_s=60",
            "timing.max_time_s=60",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    (record,) = records(sweep_dir)
    assert record["status"] == "timeout"
    assert record["error"].startswith("inference: stopped after timeout_s=1.5 s")
    assert record["overhead"]["job_wall_s"] < 20
    assert not _workers(os.getpid())


# One round: the records that finished before the kill must come back byte for byte.
SWEEP = [*TINY_BERT, *QUICK, "timing.rounds=1", "batch=1", "seq=8,16,24"]


@pytest.mark.slow  # make test-slow (CI runs it too)
def test_kill_the_sweep_then_resume_it(tmp_path, sweep_dir):
    args = [*SWEEP, f"hydra.sweep.dir={sweep_dir}", "-m"]
    proc = start_sweeper(args, tmp_path)
    try:
        _wait_for(lambda: len(list(sweep_dir.rglob("record.json"))) >= 1)
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of the whole process group
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _wait_for(
        lambda: not any(_is_sweeper_process(p, proc.pid, sweep_dir) for p in psutil.process_iter()),
        10,
    )
    finished = {p: p.read_bytes() for p in sweep_dir.rglob("record.json")}
    assert 1 <= len(finished) < 3
    for path in finished:  # every record on disk is whole
        json.loads(path.read_text())

    resumed = run_sweeper(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for path, content in finished.items():
        assert path.read_bytes() == content  # kept, not re-measured
    assert sorted(by_seq(records(sweep_dir))) == [8, 16, 24]
    assert resumed.stderr.count("kept Cell(") + resumed.stdout.count("kept Cell(") == len(finished)
    assert "3 cells: 3 ok" in resumed.stdout


@pytest.mark.slow  # make test-slow (CI runs it too)
def test_a_record_of_another_config_is_never_reused(tmp_path, sweep_dir):
    conf = tmp_path / "myconf" / "model"
    conf.mkdir(parents=True)
    preset = conf / "paper_bert.yaml"
    preset.write_text(
        "defaults:\n  - bert_base\n  - _self_\nname: paper-bert\nhidden_size: 32\n"
        "num_hidden_layers: 1\nnum_attention_heads: 2\nintermediate_size: 64\n"
        "vocab_size: 1000\n"
    )
    args = [
        "--config-dir",
        str(tmp_path / "myconf"),
        "model=paper_bert",
        *QUICK,
        "seq=8",
        f"hydra.sweep.dir={sweep_dir}",
        "-m",
    ]
    assert run_sweeper(args, cwd=tmp_path).returncode == 0
    (first,) = records(sweep_dir)
    preset.write_text(preset.read_text().replace("num_hidden_layers: 1", "num_hidden_layers: 2"))
    second = run_sweeper(args, cwd=tmp_path)
    assert second.returncode == 0
    assert "measured with a different config" in second.stderr + second.stdout
    (record,) = records(sweep_dir)
    assert record["config"]["model"]["num_hidden_layers"] == 2
    (kept,) = sweep_dir.rglob("record.replaced-*.json")
    assert json.loads(kept.read_text())["config_sha256"] == first["config_sha256"]

    forced = run_sweeper([*args[:-1], "force=true", "-m"], cwd=tmp_path)
    assert forced.returncode == 0
    assert "force=true" in forced.stderr + forced.stdout
    assert len(list(sweep_dir.rglob("record.replaced-*.json"))) == 2
    assert len(list(sweep_dir.rglob("record.json"))) == 1


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("", marks=pytest.mark.slow),
        pytest.param('{"schema_version": 1, "kind": "sweeper.cell", "ce', marks=pytest.mark.slow),
    ],
)
def test_a_broken_record_is_re_measured_and_kept_aside(tmp_path, sweep_dir, broken):
    args = [*TINY_BERT, *QUICK, "seq=8", f"hydra.sweep.dir={sweep_dir}", "-m"]
    assert run_sweeper(args, cwd=tmp_path).returncode == 0
    (path,) = sweep_dir.rglob("record.json")
    path.write_text(broken)
    again = run_sweeper(args, cwd=tmp_path)
    assert again.returncode == 0
    assert records(sweep_dir)[0]["status"] == "ok"
    (kept,) = sweep_dir.rglob("record.replaced-*.json")
    assert kept.read_text() == broken


def test_a_timed_out_cell_keeps_the_samples_it_measured(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            "seq=8",
            "timeout_s=3",
            "timing.min_time_s=60",
            "timing.max_time_s=60",
            "timing.max_calls=1000000",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    (record,) = records(sweep_dir)
    result = record["results"]["inference"]
    assert record["status"] == result["status"] == "timeout"
    timing = result["time"]
    assert timing["timed_calls"] == len(timing["samples_s"]) > 0
    assert timing["stop_reason"].startswith("unfinished: saved after")
    assert f"{timing['timed_calls']} timed calls kept" in record["error"]
    assert "N/A" in table_rows(proc.stdout, "INFERENCE - SPEED - RESULT")[0]


def test_a_spent_time_budget_is_a_timeout_not_an_internal_error(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            "seq=8",
            "training=true",
            "timeout_s=0.001",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    (record,) = records(sweep_dir)
    assert record["status"] == "timeout"
    assert "internal error" not in record["error"]
    assert record["error"].startswith("inference: ") and "timeout_s=0.001 s" in record["error"]


def test_a_skipped_cell_is_reused_on_resume(tmp_path, sweep_dir):
    args = [
        *TINY_BERT,
        "model.max_position_embeddings=16",
        "seq=32",
        f"hydra.sweep.dir={sweep_dir}",
        "-m",
    ]
    assert run_sweeper(args, cwd=tmp_path).returncode == 0
    (path,) = sweep_dir.rglob("record.json")
    first = path.read_bytes()
    again = run_sweeper(args, cwd=tmp_path)
    assert again.returncode == 0
    assert "kept Cell(" in again.stdout + again.stderr
    assert path.read_bytes() == first
    assert not list(sweep_dir.rglob("record.replaced-*.json"))


def test_a_failed_cell_is_three_lines_on_the_console(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            "model.hidden_act=no_such_activation",
            "seq=8",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    console = proc.stdout + proc.stderr
    assert "Traceback" not in console
    failure = [line for line in console.splitlines() if "KeyError" in line]
    assert 1 <= len(failure) <= 3, failure
    job_dir = next(sweep_dir.rglob("record.json")).parent
    assert f"(log: {job_dir / 'worker-inference.log'})" in console
    assert "Traceback" in (job_dir / "worker-inference.log").read_text()


def test_two_sweeps_started_together_never_share_a_folder(tmp_path):
    # Skipped cells (seq beyond the positions) run no worker: the two sweeps overlap in time.
    args = [*TINY_BERT, "model.max_position_embeddings=16", "seq=32,64", "-m"]
    procs = [start_sweeper(args, tmp_path) for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    folders = sorted({p.parent.parent for p in (tmp_path / "outputs").rglob("record.json")})
    assert len(folders) == 2
    for folder in folders:  # each sweep's two cells in its own folder
        assert len(list(folder.rglob("record.json"))) == 2
        assert folder.name.split("-")[-1].isdigit()  # ... named with its process id


@pytest.mark.parametrize(
    "signum, code",
    [(signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)],
)
def test_an_interrupt_reports_the_finished_cells_and_how_to_resume(
    tmp_path, sweep_dir, signum, code
):
    args = [
        *TINY_BERT,
        "batch=1",
        "seq=8,16,24",
        "timing.min_time_s=2",
        "timing.max_time_s=2",
        "timing.rounds=1",
        f"hydra.sweep.dir={sweep_dir}",
        "-m",
    ]
    proc = start_sweeper(args, tmp_path)
    try:
        _wait_for(lambda: len(list(sweep_dir.rglob("record.json"))) >= 1)
        _wait_for(lambda: len(_workers(proc.pid)) == 1)  # the second cell is measuring
        os.killpg(proc.pid, signum)  # Ctrl-C signals the whole foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in out + err
    assert len(table_rows(out, "INFERENCE - SPEED - RESULT")) == 1
    assert "1 cells: 1 ok" in out
    resume = err.split("Resume (finished cells are kept): ")[1].strip()
    assert resume.startswith("python -m sweeper ") and resume.endswith(" -m")
    assert f"hydra.sweep.dir={sweep_dir}" in resume
    _wait_for(
        lambda: not any(_is_sweeper_process(p, proc.pid, sweep_dir) for p in psutil.process_iter()),
        10,
    )
    assert len(list(sweep_dir.rglob("record.json"))) == 1  # nothing half-done was written
    assert not list(sweep_dir.rglob("worker-*.json")) and not list(sweep_dir.rglob("tmp-*"))
    resumed = run_sweeper(shlex.split(resume)[3:], cwd=tmp_path)
    assert resumed.returncode == 0 and "3 cells: 3 ok" in resumed.stdout


def test_a_job_ended_by_the_scheduler_is_killed_and_says_how_to_resume(
    tmp_path, monkeypatch, compose_config
):
    """submitit raises UncompletedJobError in a SLURM job at its time limit."""
    from sweeper.config.job import job_from_config
    from sweeper.engine import runner

    class UncompletedJobError(RuntimeError):
        pass

    def scheduler_ends_the_job(*args):
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    job = job_from_config(compose_config(TINY_BERT), TINY_BERT)
    monkeypatch.setattr(runner, "_measure", scheduler_ends_the_job)
    record = runner.run_job(job, tmp_path / "cell")
    assert record.status.value == "killed"
    assert record.error.startswith("the scheduler ended this job (UncompletedJobError: Job not")
    assert "re-submits it" in record.error
