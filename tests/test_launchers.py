"""Beyond one machine: the launcher presets in conf/hydra/launcher/ through the real command line.

- submitit_local (``hydra/launcher=slurm_local``), the SLURM presets' path on this machine,
  started together with a basic-launcher sweep of the same cells: same records, tables and exit
  status, and no two measurements at once across both sweeps (the host-wide device lock);
- the sbatch files of ``slurm_gpu`` and ``slurm_node``, caught by a stand-in ``sbatch``;
- Ray (``hydra/launcher=ray_node``) with a local instance: slow, and only where the
  ``sweeper[ray]`` extra is installed (``make test-slow`` installs it);
- what travels with a job (nothing that holds a process), the cluster facts in the environment,
  and the collector's warning when cells ran on different hardware.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from sweeper.config import CONF_DIR
from sweeper.measure import env as env_module
from sweeper.report.collect import collect
from tests.helpers import QUICK, TINY_BERT, records, run_sweeper, sweeper_env, table_rows

CELLS = ["batch=1,2", "seq=8,16"]
SECTIONS = ("INFERENCE - SPEED - RESULT", "INFERENCE - MEMORY - RESULT")
HAS_RAY = importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None


def sweep_args(sweep_dir: Path, lock_dir: Path, *more: str):
    return [
        *TINY_BERT,
        *QUICK,
        *CELLS,
        f"lock_dir={lock_dir}",
        *more,
        f"hydra.sweep.dir={sweep_dir}",
    ]


def start(args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args, "-m"],
        cwd=cwd,
        env=sweeper_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def windows(sweep_dir: Path) -> list:
    """(start, end, cell, mode) of every measurement under sweep_dir (ISO UTC strings sort)."""
    return [
        (result["started_utc"], result["finished_utc"], record["cell"], mode)
        for record in records(sweep_dir)
        for mode, result in record["results"].items()
    ]


@pytest.fixture(scope="module")
def together(tmp_path_factory):
    """A basic-launcher sweep and a submitit_local sweep of the same four cells, started at once."""
    root = tmp_path_factory.mktemp("together")
    lock_dir = root / "locks"
    basic, submitit = root / "basic", root / "submitit"
    procs = {
        "basic": start(sweep_args(basic, lock_dir), root),
        "submitit": start(sweep_args(submitit, lock_dir, "hydra/launcher=slurm_local"), root),
    }
    out = {name: (proc.communicate(timeout=600), proc.returncode) for name, proc in procs.items()}
    return types.SimpleNamespace(
        root=root, lock_dir=lock_dir, basic=basic, submitit=submitit, out=out
    )


def test_submitit_local_gives_the_basic_launchers_records_tables_and_exit_status(together):
    (basic_out, basic_err), basic_rc = together.out["basic"]
    (sub_out, sub_err), sub_rc = together.out["submitit"]
    assert basic_rc == 0, basic_err[-3000:]
    assert sub_rc == 0, sub_err[-3000:]
    ours, theirs = records(together.submitit), records(together.basic)
    assert [r["cell"] for r in ours] == [r["cell"] for r in theirs]
    assert len(ours) == 4 and {r["status"] for r in ours + theirs} == {"ok"}
    for label in SECTIONS:  # the same rows (model, batch, seq); the figures are measured anew
        assert [row.split()[:3] for row in table_rows(sub_out, label)] == [
            row.split()[:3] for row in table_rows(basic_out, label)
        ]
    assert sub_out.rstrip().endswith("4 cells: 4 ok") and basic_out.rstrip().endswith(
        "4 cells: 4 ok"
    )
    # The collector ran on the submitting host, once all jobs had ended: its files are there.
    assert "tiny-bert,1,8," in (together.submitit / "inference_time.csv").read_text()


def test_no_two_measurements_of_the_two_sweeps_overlap(together):
    spans = sorted(windows(together.basic) + windows(together.submitit))
    assert len(spans) == 8
    for (_, end, cell, mode), (start_next, _, cell_next, mode_next) in itertools.pairwise(spans):
        assert end <= start_next, f"{cell} {mode} overlaps {cell_next} {mode_next}"
    # Four jobs and a sweep started together: all but one had to wait, and that is on record.
    waits = [
        r["results"]["inference"]["lock_wait_s"]
        for r in records(together.basic) + records(together.submitit)
    ]
    assert sum(w > 0.1 for w in waits) >= 3, waits
    assert {
        tuple(r["results"]["inference"]["locks"].items()) for r in records(together.submitit)
    } == {(("cpu", "exclusive"),)}


def test_a_waiting_job_logs_who_holds_the_lock(together):
    logs = "".join(p.read_text() for p in together.submitit.rglob("sweeper.log"))
    found = re.findall(
        r"waiting for the cpu lock held by pid \d+ \(user \S+ on \S+\), sweep (\S+), "
        r"cell tiny-bert pt/cpu batch=\d seq=\d+ inference, since \S+",
        logs,
    )
    assert found and set(found) <= {str(together.basic), str(together.submitit)}


def test_each_job_starts_its_own_zygote_on_its_node_and_records_its_job_id(together):
    ours = records(together.submitit)
    job_ids = [r["environment"]["submitit_job_id"] for r in ours]
    assert len(set(job_ids)) == 4
    assert set(job_ids) <= {p.name for p in (together.submitit / ".submitit").iterdir()}
    zygotes = [r["results"]["inference"]["zygote"] for r in ours]
    assert all(z["started_by_this_cell"] for z in zygotes)
    assert len({z["pid"] for z in zygotes}) == 4
    basic_zygotes = {r["results"]["inference"]["zygote"]["pid"] for r in records(together.basic)}
    assert len(basic_zygotes) == 1  # the basic launcher runs every cell in one process
    assert all("submitit_job_id" not in r["environment"] for r in records(together.basic))


@pytest.mark.slow  # make test-slow (CI runs it too)
def test_a_resume_under_submitit_re_measures_only_the_cell_without_its_record(together):
    kept = records(together.submitit)
    (missing,) = [
        path
        for path in together.submitit.rglob("record.json")
        if '"batch_size": 2' in path.read_text() and '"sequence_length": 16' in path.read_text()
    ]
    missing.unlink()
    proc = run_sweeper(
        [*sweep_args(together.submitit, together.lock_dir, "hydra/launcher=slurm_local"), "-m"],
        cwd=together.root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith("4 cells: 4 ok")
    after = {json.dumps(r["cell"], sort_keys=True): r for r in records(together.submitit)}
    remeasured = []
    for before in kept:
        now = after[json.dumps(before["cell"], sort_keys=True)]
        if now["started_utc"] != before["started_utc"]:
            remeasured.append((now["cell"]["batch_size"], now["cell"]["sequence_length"]))
    assert remeasured == [(2, 16)]


# ------------------------------------------------------------------------------------------------
# SLURM presets: the sbatch file they make, caught by a stand-in sbatch (no cluster needed)


FAKE_SBATCH = """#!/bin/sh
cp "$1" "$SBATCH_COPY"
echo "sbatch: error: a stand-in for this test" >&2
exit 1
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun first
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    copy = tmp_path / "job.sbatch"

    def submit(*args: str) -> list:
        env = {
            **sweeper_env(),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "SBATCH_COPY": str(copy),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "sweeper", *args, f"hydra.sweep.dir={tmp_path / 's'}", "-m"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "sbatch: error: a stand-in for this test" in proc.stderr, proc.stderr[-3000:]
        return copy.read_text().splitlines()

    return submit


def test_slurm_gpu_asks_one_gpu_and_one_task_per_cell_with_the_users_settings(fake_slurm):
    script = fake_slurm(
        "hydra/launcher=slurm_gpu",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=90",
        'hydra.launcher.setup=["module load cuda/12.4"]',
        "device=cuda",
        "seq=8,16",
    )
    flags = {line for line in script if line.startswith("#SBATCH")}
    assert {
        "#SBATCH --array=0-1%2",  # one array task per cell
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --signal=USR2@120",  # time to stop the worker before the time limit
    } <= flags
    assert not any("exclusive" in flag for flag in flags)
    assert script.index("module load cuda/12.4") < script.index("# command")


def test_slurm_node_takes_a_whole_node_per_cell(fake_slurm):
    script = fake_slurm("hydra/launcher=slurm_node", "hydra.launcher.cpus_per_task=64", "seq=8")
    flags = {line for line in script if line.startswith("#SBATCH")}
    assert {
        "#SBATCH --exclusive",
        "#SBATCH --mem=0",
        "#SBATCH --cpus-per-task=64",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --signal=USR2@120",
    } <= flags
    assert not any("gpus" in flag for flag in flags)


@pytest.mark.parametrize(
    "preset", sorted(p.stem for p in (Path(CONF_DIR) / "hydra/launcher").iterdir())
)
def test_every_launcher_preset_composes(compose_config, preset):
    if preset.startswith("ray") and not HAS_RAY:
        pytest.skip("hydra-ray-launcher is not installed (pip install 'sweeper[ray]')")
    cfg = compose_config([f"hydra/launcher={preset}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.startswith("hydra_plugins.hydra_")
    header = (Path(CONF_DIR) / "hydra/launcher" / f"{preset}.yaml").read_text()
    assert f"hydra/launcher={preset}" in header  # its command line, in its header
    if preset == "slurm_gpu":
        assert (launcher.gpus_per_node, launcher.tasks_per_node) == (1, 1)
    if preset == "ray_gpu":
        assert launcher.ray.remote.num_gpus == 1
    if preset == "ray_node":
        assert launcher.ray.remote.resources == {"sweeper_node": 1}


@pytest.mark.skipif(HAS_RAY, reason="the Ray launcher is installed here")
def test_a_ray_preset_without_the_plugin_says_what_to_install(tmp_path):
    proc = run_sweeper(["hydra/launcher=ray_gpu", "seq=8", "-m"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "pip install 'sweeper[ray]'" in proc.stderr


# ------------------------------------------------------------------------------------------------
# What travels with a job, and what the record says about where it ran


def test_the_task_function_carries_no_zygote(tmp_path):
    """The launchers pickle the task function with cloudpickle and call it on the node; a zygote
    (a process with pipes) of the submitting process must not travel with it."""
    cloudpickle = pytest.importorskip("cloudpickle")
    from sweeper.engine import app, zygote

    sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    fake = types.SimpleNamespace(proc=sleeper, alive=lambda: True)
    zygote._ZYGOTES[("pt", ())] = fake
    try:
        task_function = app.hydra_app.__wrapped__  # what hydra.main hands to the launcher
        blob = tmp_path / "task.pkl"
        blob.write_bytes(cloudpickle.dumps(task_function))
    finally:
        del zygote._ZYGOTES[("pt", ())]
        sleeper.kill()
        sleeper.wait()
    code = textwrap.dedent(
        f"""
        import pickle
        from sweeper.engine import zygote
        task = pickle.loads(open({str(blob)!r}, "rb").read())
        print(task.__module__, task.__name__, len(zygote._ZYGOTES))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split() == ["sweeper.engine.app", "hydra_app", "0"], proc.stderr


def test_slurm_job_and_node_go_into_the_environment(monkeypatch):
    for key, value in {
        "SLURM_JOB_ID": "4242",
        "SLURM_ARRAY_JOB_ID": "4240",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURMD_NODENAME": "gpu-node-17",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURM_CLUSTER_NAME": "big",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delitem(sys.modules, "submitit", raising=False)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert env_module.cluster_facts() == {
        "slurm_job_id": "4242",
        "slurm_array_job_id": "4240",
        "slurm_array_task_id": "2",
        "slurm_node": "gpu-node-17",
        "slurm_partition": "gpu",
        "slurm_cluster": "big",
    }


def test_ray_ids_go_into_the_environment_when_a_ray_task_runs_the_cell(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURMD_NODENAME"):
        monkeypatch.delenv(key, raising=False)
    for key in ("SLURM_JOB_PARTITION", "SLURM_CLUSTER_NAME"):
        monkeypatch.delenv(key, raising=False)
    context = types.SimpleNamespace(
        get_node_id=lambda: "node-1", get_job_id=lambda: "01000000", get_task_id=lambda: "task-9"
    )
    fake_ray = types.SimpleNamespace(
        is_initialized=lambda: True, get_runtime_context=lambda: context
    )
    monkeypatch.delitem(sys.modules, "submitit", raising=False)
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    assert env_module.cluster_facts() == {
        "ray_node_id": "node-1",
        "ray_job_id": "01000000",
        "ray_task_id": "task-9",
    }
    monkeypatch.delitem(sys.modules, "ray")
    assert env_module.cluster_facts() == {}  # no scheduler, no Ray: nothing added


# ------------------------------------------------------------------------------------------------
# The collector: cells of one table on different hardware warn; per-run job ids do not


def _golden_sweep(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "sweep"
    shutil.copytree(Path(__file__).parent / "data" / "golden", target)
    return target


def _edit(path: Path, **environment) -> None:
    record = json.loads(path.read_text())
    record["environment"].update(environment)
    path.write_text(json.dumps(record))


def test_cells_on_different_hardware_warn_and_name_the_keys(tmp_path):
    sweep = _golden_sweep(tmp_path)
    for path in sweep.rglob("record.json"):
        _edit(path, gpu="NVIDIA H100 80GB HBM3", gpu_driver_version="550.54")
    _edit(
        sweep / "seq=32" / "record.json",
        cpu_model="AMD EPYC 9654",
        gpu="NVIDIA A100-SXM4-80GB",
        gpu_driver_version="535.104",
    )
    result = collect(sweep, write=False)
    assert any(
        "(gpu, cpu_model, gpu_driver_version differ)" in warning for warning in result.warnings
    ), result.warnings
    assert "- gpu: NVIDIA H100 80GB HBM3 (4 cells); NVIDIA A100-SXM4-80GB (1 cell)" in result.report


def test_each_cells_own_job_and_task_ids_and_gpu_power_state_do_not_warn(tmp_path):
    sweep = _golden_sweep(tmp_path)
    for n, path in enumerate(sorted(sweep.rglob("record.json"))):
        _edit(
            path,
            slurm_job_id=str(4240 + n),
            slurm_array_task_id=str(n),
            submitit_job_id=f"4240_{n}",
            ray_task_id=f"task-{n}",
            ray_node_id=f"node-{n}",
            ray_job_id="01000000",
            gpu_performance_state=n % 2 * 8,  # P0 busy, P8 idle: a moment's state, not hardware
        )
    assert collect(sweep, write=False).warnings == []


# ------------------------------------------------------------------------------------------------
# Ray


@pytest.mark.slow
@pytest.mark.skipif(not HAS_RAY, reason="needs sweeper[ray] (make setup-ray; make test-slow does)")
def test_ray_node_runs_one_cell_at_a_time_with_the_threads_it_asked_for(tmp_path):
    sweep_dir, lock_dir = tmp_path / "sweep", tmp_path / "locks"
    # A local instance on the loopback address (Ray's single-node mode), no usage report.
    env = {
        **sweeper_env(),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeper",
            "hydra/launcher=ray_node",
            "hydra.launcher.ray.remote.num_cpus=2",
            # The local instance declares the resource the preset reserves.
            "+hydra.launcher.ray.init.resources={sweeper_node:1}",
            "+hydra.launcher.ray.init.num_cpus=2",
            "+hydra.launcher.ray.init.include_dashboard=false",
            *sweep_args(sweep_dir, lock_dir),
            "-m",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\n4 cells: 4 ok\n" in proc.stdout  # Ray forwards its tasks' logs, later lines too
    found = records(sweep_dir)
    spans = sorted(windows(sweep_dir))
    for (_, end, *_), (start_next, *_) in itertools.pairwise(spans):
        assert end <= start_next
    for record in found:
        environment = record["environment"]
        assert environment["ray_node_id"] and environment["ray_job_id"]
        runtime = record["results"]["inference"]["framework_runtime"]
        assert runtime["torch_intra_op_threads"] == 2  # Ray's OMP_NUM_THREADS = num_cpus
    assert len({r["environment"]["ray_task_id"] for r in found}) == 4
