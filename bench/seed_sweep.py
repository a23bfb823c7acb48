"""The seed's bert-base sweep (batch 8, seq 8/32/128/512, inference, speed and memory, CPU).

    python bench/seed_sweep.py                 # this tool, PyTorch then TensorFlow
    python bench/seed_sweep.py --old           # ... each followed by the old tool (4.48.3)
    python bench/seed_sweep.py --frameworks pt

Prints, per framework: this tool's tables and wall time; with ``--old``, the old
PyTorchBenchmark / TensorFlowBenchmark tables (run from a separate virtual environment that this
script makes, ``bench/.venv-old``, with ``configs=[BertConfig()]`` so nothing is downloaded), its
wall time and the ratio; then this tool's per-cell overhead (everything but warm-up and timed
calls: process start, imports, model build, writing). Results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from sweeper.record import Mode
from sweeper.report.collect import load_records

REPO = Path(__file__).resolve().parent.parent
OLD_VENV = REPO / "bench" / ".venv-old"
# The last transformers release with the old benchmark utilities, and the frameworks we use.
OLD_REQUIREMENTS = [
    "transformers==4.48.3",
    "torch==2.13.0",
    "tensorflow==2.21.*",
    "tf-keras==2.21.*",
    "psutil",  # without it the old tool measures no CPU memory
]
OLD_SCRIPT = """
import sys, time
from transformers import BertConfig
framework = sys.argv[1]
common = dict(models=["bert-base"], batch_sizes=[8], sequence_lengths=[8, 32, 128, 512],
              inference=True, training=False, speed=True, memory=True, multi_process=True,
              env_print=True)
if framework == "pt":
    from transformers import PyTorchBenchmark, PyTorchBenchmarkArguments
    bench = PyTorchBenchmark(PyTorchBenchmarkArguments(cuda=False, **common),
                             configs=[BertConfig()])
else:
    from transformers import TensorFlowBenchmark, TensorFlowBenchmarkArguments
    bench = TensorFlowBenchmark(TensorFlowBenchmarkArguments(eager_mode=False, use_xla=False,
                                                             cuda=False, **common),
                                configs=[BertConfig()])
bench.run()
"""


def run(cmd, env=None, log=None) -> tuple:
    """Run ``cmd``; return (wall seconds, stdout, returncode)."""
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if log is not None:
        log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return wall, proc.stdout, proc.returncode


def ensure_old_venv() -> Path:
    python = OLD_VENV / "bin" / "python"
    stamp = OLD_VENV / ".installed"
    if not stamp.exists():
        print(f"making {OLD_VENV} with {', '.join(OLD_REQUIREMENTS)} (once; 1-2 min)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(OLD_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *OLD_REQUIREMENTS], check=True)
        stamp.touch()
    return python


def ours(framework: str, out: Path) -> tuple:
    sweep_dir = out / f"sweeper-{framework}"
    cmd = [
        sys.executable,
        "-m",
        "sweeper",
        "sweep=seed_bert_base",
        "model=bert_base",
        f"framework={framework}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    wall, stdout, code = run(cmd, log=out / f"sweeper-{framework}.log")
    report = "\n".join(line for line in stdout.splitlines() if not line.startswith("[20"))
    return wall, report, code, sweep_dir


def old(framework: str, python: Path, out: Path) -> tuple:
    env = dict(os.environ)
    env["USE_TF" if framework == "pt" else "USE_TORCH"] = "0"
    env["CUDA_VISIBLE_DEVICES"] = ""
    log = out / f"old-{framework}.log"
    return run([str(python), "-c", OLD_SCRIPT, framework], env=env, log=log)


def overhead_table(sweep_dir: Path) -> str:
    lines = [
        f"{'cell':>12} {'wall s':>8} {'measure s':>10} {'overhead s':>11}  "
        f"{'spawn':>6} {'import':>7} {'build':>6} {'1st call':>8} {'hydra cpu':>9}  "
        "calls  verdict"
    ]
    rows = sorted(load_records(sweep_dir)[0], key=lambda r: r.cell.sequence_length)
    nan = float("nan")
    for record in rows:
        over = record.overhead
        phases = over.per_mode.get("inference", {})
        timing = record.time(Mode.inference)
        lines.append(
            f"{'seq=' + str(record.cell.sequence_length):>12} {over.job_wall_s:8.1f} "
            f"{over.warmup_and_timed_s:10.1f} {over.overhead_s:11.1f}  "
            f"{phases.get('spawn_s', 0):6.2f} {phases.get('import_s', 0):7.2f} "
            f"{phases.get('build_s', 0):6.2f} {phases.get('first_call_s', 0):8.2f} "
            f"{over.hydra_process_cpu_s or 0:9.2f}  "
            + (
                f"{timing.timed_calls:5d}  {timing.noise.verdict} "
                f"(CI +-{timing.ci95_halfwidth_pct or nan:.1f} %, IQR {timing.iqr_pct:.1f} %)"
                if timing
                else f"{0:5d}  {record.status.value}"
            )
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", action="store_true", help="also run the old tool (4.48.3)")
    parser.add_argument("--frameworks", default="pt,tf", help="pt,tf (default), pt or tf")
    args = parser.parse_args()
    out = REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    old_python = ensure_old_venv() if args.old else None
    failed = False
    for framework in args.frameworks.split(","):
        print(f"\n################ {framework}: this tool ################", flush=True)
        wall, report, code, sweep_dir = ours(framework, out)
        print(report)
        print(f"this tool ({framework}): wall time {wall:.1f} s (exit {code})")
        failed |= code != 0
        if old_python is not None:
            print(
                f"\n################ {framework}: old tool (transformers 4.48.3) ##########",
                flush=True,
            )
            old_wall, old_report, old_code = old(framework, old_python, out)
            print(old_report)
            print(f"old tool ({framework}): wall time {old_wall:.1f} s (exit {old_code})")
            print(f"ratio this/old ({framework}): {wall / old_wall:.2f}")
            failed |= old_code != 0
        print(f"\nper-cell overhead ({framework}), this tool:\n{overhead_table(sweep_dir)}")
    print(f"\nlogs and sweep folders: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
