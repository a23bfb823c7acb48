"""The report side of real sweeps through `python -m sweeper` (tiny models): the manifest, the
progress lines, stale records left out, plots, a partial sweep resumed with the command the
collector prints, a single run, and the same sweep from Python (sweeper.run)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import QUICK, TINY_BERT, quick, run_sweeper, sweeper_env
from tests.synthetic import make_record, write_record

SEQS = (8, 16, 32)
ARGS = [*TINY_BERT, *quick(rounds=2), "batch=1", "seq=8,16,32"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 3-cell sweep into a folder that already held an unrelated failed record."""
    root = tmp_path_factory.mktemp("swept")
    sweep_dir = root / "sweep"
    write_record(sweep_dir, "old-sweep-cell", make_record(seq=8, status="oom", error="MemoryError"))
    proc = run_sweeper([*ARGS, f"hydra.sweep.dir={sweep_dir}", "-m"], cwd=root)
    return root, sweep_dir, proc


def test_a_stale_failed_record_is_left_out_and_does_not_fail_the_sweep(swept):
    _, sweep_dir, proc = swept
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 cells: 3 ok" in proc.stdout
    assert "Left out 1 record: not part of the latest run of this sweep folder" in proc.stdout
    assert "old-sweep-cell/record.json" in proc.stdout


def test_the_manifest_lists_every_job_with_its_folder_and_identity(swept):
    _, sweep_dir, _ = swept
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert manifest["kind"] == "sweeper.sweep" and manifest["total_jobs"] == 3
    assert sorted(job["cell"]["sequence_length"] for job in manifest["jobs"]) == list(SEQS)
    for job in manifest["jobs"]:
        record = json.loads((sweep_dir / job["folder"] / "record.json").read_text())
        assert record["config_sha256"] == job["identity"]
        assert record["overrides"] == job["overrides"]
    assert manifest["command"].startswith("python -m sweeper model=bert_base model.name=tiny-bert")
    assert manifest["command"].endswith(f"seq=8,16,32 hydra.sweep.dir={sweep_dir} -m")


def test_one_progress_line_per_finished_cell(swept):
    _, _, proc = swept
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    assert len(lines) == 6  # three cells, two rounds: a pass each
    pattern = (
        r"\[{i}/6\] tiny-bert pt cpu b1 s{seq}, round {r}/2: ok [0-9.e-]+ s\*?(?: ±[0-9.]+ %)?, "
        r"\d+ MB \(\d+\.\d s"
    )
    passes = [(seq, r) for r in (1, 2) for seq in SEQS]
    for i, (line, (seq, r)) in enumerate(zip(lines, passes), 1):
        assert re.match(pattern.format(i=i, seq=seq, r=r), line), line
    assert "; ETA " in lines[0] and "ETA" not in lines[5]
    assert "\033[" not in proc.stdout  # not a terminal: no colour


def test_plots_are_drawn_at_the_end(swept):
    _, sweep_dir, proc = swept
    for name in ("inference_time.png", "inference_time.pdf", "inference_memory.png"):
        assert (sweep_dir / "plots" / name).stat().st_size > 1000
    assert f"plots: {sweep_dir / 'plots' / 'inference_time.png'}" in proc.stdout


def test_compare_and_report_run_on_a_real_sweep(swept):
    root, sweep_dir, _ = swept
    compare = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeper.compare",
            str(sweep_dir),
            str(sweep_dir),
            "--fail-above",
            "5%",
        ],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0, compare.stderr
    assert "3 cells: 3 not significant" in compare.stdout
    paper = subprocess.run(
        [sys.executable, "-m", "sweeper.report", str(sweep_dir), "--format", "latex"],
        capture_output=True,
        text=True,
    )
    assert paper.returncode == 0, paper.stderr
    assert "% Command: python -m sweeper model=bert_base" in paper.stdout
    assert r"tiny-bert & " in paper.stdout


def test_the_same_sweep_from_python_keeps_every_cell(swept):
    """sweeper.run goes through Hydra's multirun, the validating sweeper and the callbacks."""
    root, sweep_dir, _ = swept
    code = (
        "import sweeper\n"
        f"frame = sweeper.run({ARGS!r}, sweep_dir={str(sweep_dir)!r})\n"
        "print('ROWS', len(frame), sorted(frame['sequence_length']), set(frame['status']))\n"
        "try:\n"
        "    sweeper.run(['batch=0'], sweep_dir='never')\n"
        "except ValueError as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=sweeper_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ROWS 3 [8, 16, 32] {'ok'}" in proc.stdout
    assert proc.stdout.count("(kept from an earlier run)") == 6  # three cells, two passes
    assert "REFUSED sweeper: bad input: batch=0 must be a positive integer" in proc.stdout
    # Refused before any job ran: no record, no manifest (Hydra made the folder itself).
    assert not list((root / "never").rglob("record.json"))
    assert not (root / "never" / "sweep.json").exists()


@pytest.mark.slow  # a second sweep; the message itself is tested in test_collect.py
def test_a_partial_sweep_says_what_is_missing_and_the_printed_command_resumes_it(swept):
    root, sweep_dir, _ = swept
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    gone = next(j for j in manifest["jobs"] if j["cell"]["sequence_length"] == 16)
    (sweep_dir / gone["folder"] / "record.json").unlink()
    collect = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", str(sweep_dir)], capture_output=True, text=True
    )
    assert collect.returncode == 0
    last = collect.stdout.rstrip().splitlines()[-1]
    prefix = "1 of 3 cells have no record yet; resume with: "
    assert last.startswith(prefix)
    command = shlex.split(last[len(prefix) :])
    assert command[:3] == ["python", "-m", "sweeper"] and command[-1] == "-m"
    resumed = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=root,
        env=sweeper_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("(kept from an earlier run)") == 2
    assert "3 cells: 3 ok" in resumed.stdout and "no record yet" not in resumed.stdout


def test_a_single_run_has_a_manifest_too(tmp_path):
    run_dir = tmp_path / "one"
    proc = run_sweeper(
        [*TINY_BERT, *QUICK, "batch=1", "seq=8", f"hydra.run.dir={run_dir}"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((run_dir / "sweep.json").read_text())
    (job,) = manifest["jobs"]
    assert job["folder"] == "." and manifest["total_jobs"] == 1
    assert manifest["command"].endswith(f"batch=1 seq=8 hydra.run.dir={run_dir}")
    assert json.loads((run_dir / "record.json").read_text())["config_sha256"] == job["identity"]
    assert "[1/1] tiny-bert pt cpu b1 s8: ok " in proc.stdout
    assert "1 cells: 1 ok" in proc.stdout


@pytest.mark.parametrize("module", ["sweeper.compare", "sweeper.plot", "sweeper.report"])
def test_the_report_commands_users_type_run(module):
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"usage: python -m {module}" in proc.stdout
