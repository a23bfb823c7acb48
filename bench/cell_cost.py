"""What a cell costs outside its measurement, before and after a change (issue 13).

    python bench/cell_cost.py                          # this checkout, every sweep below
    python bench/cell_cost.py --before 19e97a0         # ... and that commit, sweep by sweep
    python bench/cell_cost.py --sweeps seed-pt,large-pt --rounds 1

Each sweep runs through ``python -m sweeper`` (from a temporary git worktree for ``--before``,
with the same virtual environment), one after the other, never two at once. Per sweep it prints
the wall time, and per cell and round the *overhead*: the job's wall time minus warm-up and timed
calls, minus the cold call (what the issue calls per-cell overhead: process starts, imports,
model builds, inputs, writing). Sweeps:

- ``seed-pt``, ``seed-tf``: the seed's grid (bert-base, batch 8, seq 8/32/128/512, inference).
- ``large-pt``, ``large-tf``: 8 cells of bert-large (batch 1 and 2, seq 8/16/32/64),
  inference, where the build (seconds) is most of a cell's cost outside measuring.

Per cell it also prints the inference median with its 95 % CI and the peak memory, to check
that a change in how cells start leaves the figures where they were.

``--rounds`` sets ``timing.rounds`` for this checkout (a commit before rounds existed measures
one round); the default 1 compares like with like. Results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent

SWEEPS: Dict[str, List[str]] = {
    "seed-pt": ["sweep=seed_bert_base", "model=bert_base", "framework=pt"],
    "seed-tf": ["sweep=seed_bert_base", "model=bert_base", "framework=tf"],
    "large-pt": [
        "model=bert_large",
        "framework=pt",
        "batch=1,2",
        "seq=8,16,32,64",
        "-m",
    ],
    "large-tf": [
        "model=bert_large",
        "framework=tf",
        "batch=1,2",
        "seq=8,16,32,64",
        "-m",
    ],
}


def run_sweep(checkout: Path, name: str, out: Path, extra: List[str]) -> Dict[str, object]:
    """Run one sweep from ``checkout``; return its wall time and per-cell overheads."""
    out.mkdir(parents=True, exist_ok=True)
    sweep_dir = out / name
    args = [a for a in SWEEPS[name] if a != "-m"]
    multirun = ["-m"] if "-m" in SWEEPS[name] else []
    cmd = [sys.executable, "-m", "sweeper", *args, *extra, f"hydra.sweep.dir={sweep_dir}"]
    cmd += multirun
    env = dict(os.environ, PYTHONPATH=str(checkout))
    env.pop("HYDRA_FULL_ERROR", None)
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - tic
    (out / f"{name}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    cells = []
    for path in sorted(sweep_dir.rglob("record.json")):
        record = json.loads(path.read_text())
        over = record.get("overhead") or {}
        first = sum(
            (r.get("phases_s") or {}).get("first_call_s", 0.0) for r in record["results"].values()
        )
        builds = [r.get("build") or {} for r in record["results"].values()]
        rounds = record.get("rounds") or 1
        cells.append(
            {
                "cell": f"b{record['cell']['batch_size']} s{record['cell']['sequence_length']}",
                "status": record["status"],
                "rounds": rounds,
                "sweep_index": record.get("sweep_index"),
                "job_wall_s": over.get("job_wall_s"),
                "measuring_s": over.get("warmup_and_timed_s"),
                "first_call_s": first,
                # per round: what the job spent outside warm-up, timed calls and cold call
                "overhead_s": (
                    (over.get("job_wall_s", 0.0) - over.get("warmup_and_timed_s", 0.0) - first)
                    / rounds
                ),
                "build_s": sum(
                    (r.get("phases_s") or {}).get("build_s", 0.0)
                    for r in record["results"].values()
                ),
                "shared": any(b.get("shared") and not b.get("new") for b in builds),
                "time": (record["results"].get("inference") or {}).get("time") or {},
                "memory": (record["results"].get("inference") or {}).get("memory") or {},
            }
        )
    cells.sort(key=lambda c: c["sweep_index"] if c["sweep_index"] is not None else 0)
    return {"wall_s": wall_s, "exit": proc.returncode, "cells": cells}


def report(label: str, name: str, result: Dict[str, object]) -> str:
    cells = result["cells"]
    lines = [
        f"{label} {name}: wall {result['wall_s']:.1f} s (exit {result['exit']}), "
        f"{len(cells)} cells",
        f"  {'cell':>8} {'status':>7} {'rounds':>6} {'job s':>7} {'measure s':>9} "
        f"{'1st call s':>10} {'build s':>7} {'overhead s/round':>16} "
        f"{'median ms [95 % CI]':>26} {'peak MiB':>8}",
    ]
    for c in cells:
        t, m = c["time"], c["memory"]
        median = (
            f"{1e3 * t['median_s']:.2f} [{1e3 * t['ci95_low_s']:.2f}, {1e3 * t['ci95_high_s']:.2f}]"
            if all(t.get(k) is not None for k in ("median_s", "ci95_low_s", "ci95_high_s"))
            else "-"
        )
        peak = f"{m['peak_rss_mib']:.0f}" if m.get("peak_rss_mib") is not None else "-"
        lines.append(
            f"  {c['cell']:>8} {c['status']:>7} {c['rounds']:>6} {c['job_wall_s']:7.2f} "
            f"{c['measuring_s']:9.2f} {c['first_call_s']:10.2f} {c['build_s']:7.2f} "
            f"{c['overhead_s']:16.2f} {median:>26} {peak:>8}"
        )
    overheads = [c["overhead_s"] for c in cells]
    if overheads:
        later = overheads[1:] or overheads
        total = sum(o * c["rounds"] for o, c in zip(overheads, cells))
        lines.append(
            f"  overhead outside measuring: {total:.1f} s in all; first cell "
            f"{overheads[0]:.2f} s; later cells median {statistics.median(later):.2f} s, "
            f"max {max(later):.2f} s"
        )
    return "\n".join(lines)


def worktree(rev: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="sweeper-before-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(folder), rev], check=True
    )
    return folder


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to measure first, sweep by sweep")
    parser.add_argument("--sweeps", default=",".join(SWEEPS), help=",".join(SWEEPS))
    parser.add_argument("--rounds", type=int, default=1, help="timing.rounds for this checkout")
    args = parser.parse_args(argv)
    out = REPO / "bench" / "results" / time.strftime("cell-cost-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    before = worktree(args.before) if args.before else None
    summary = {}
    try:
        for name in args.sweeps.split(","):
            if before is not None:
                result = run_sweep(before, name, out / "before", [])
                print(report(f"before ({args.before})", name, result), flush=True)
                summary[f"before/{name}"] = result
            result = run_sweep(REPO, name, out / "after", [f"timing.rounds={args.rounds}"])
            print(report("this checkout", name, result), flush=True)
            summary[f"after/{name}"] = result
            if before is not None:
                ratio = result["wall_s"] / summary[f"before/{name}"]["wall_s"]
                print(f"  wall time after/before: {ratio:.2f}\n", flush=True)
    finally:
        if before is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"logs, sweep folders and summary.json: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
