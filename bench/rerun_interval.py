"""Does the interval a run reports hold up when the sweep is run again? (issue 8.4)

    python bench/rerun_interval.py                       # 5 runs each of timing.rounds=1, 2, 3
    python bench/rerun_interval.py --runs 5 --rounds 2 --framework tf

Runs the same cell (bert-base with 4 layers, batch 4, seq 64, inference) in ``--runs``
consecutive sweeps for each ``timing.rounds`` setting, and prints per run the median, the
interval the tables and ``ci95_low_s``/``ci95_high_s`` report, its half-width and which noise
checks fired; then the pooled median of every sample of those runs and in how many runs the
reported interval holds it (the target: at least 4 of 5), and each setting's wall time. For
comparison it also scores, from the same samples, the intervals other methods would have
reported: the pooled samples' CI alone (what one round claims), and the pooled CI united with
the range of the round medians instead of their t-interval. Results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from sweeper.measure.stats import TimeStats

REPO = Path(__file__).resolve().parent.parent
CELL = [
    "model=bert_base",
    "model.name=bert-4l",
    "model.num_hidden_layers=4",
    "batch=4",
    "seq=64",
]


def one_run(out: Path, name: str, rounds: int, framework: str) -> dict:
    sweep_dir = out / name
    cmd = [
        sys.executable,
        "-m",
        "sweeper",
        *CELL,
        f"framework={framework}",
        f"timing.rounds={rounds}",
        f"hydra.sweep.dir={sweep_dir}",
        "-m",
    ]
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - tic
    (out / f"{name}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    (path,) = sweep_dir.rglob("record.json")
    timing = json.loads(path.read_text())["results"]["inference"]["time"]
    return {"wall_s": wall_s, **timing}


def _pooled(stats: TimeStats) -> Optional[Tuple[float, float]]:
    return stats.pooled_ci95_s


def _with_range(stats: TimeStats) -> Optional[Tuple[float, float]]:
    pooled, medians = stats.pooled_ci95_s, stats.round_medians_s
    if pooled is None:
        return None
    return min(pooled[0], *medians), max(pooled[1], *medians)


METHODS: Dict[str, Callable[[TimeStats], Optional[Tuple[float, float]]]] = {
    "reported (pooled CI + t of round medians)": lambda stats: stats.ci95_s,
    "pooled CI alone": _pooled,
    "pooled CI + range of round medians": _with_range,
}


def score(runs: List[dict], pooled_median: float) -> List[str]:
    """For each method: in how many runs its interval holds the pooled median, median width."""
    lines = []
    for name, method in METHODS.items():
        holds, widths = 0, []
        for run in runs:
            stats = TimeStats(
                samples_s=run["samples_s"],
                target_ci_pct=run["target_ci_pct"],
                round_sizes=run.get("round_sizes"),
            )
            interval = method(stats)
            if interval is None:
                continue
            holds += interval[0] <= pooled_median <= interval[1]
            widths.append(
                100
                * max(stats.median_s - interval[0], interval[1] - stats.median_s)
                / stats.median_s
            )
        lines.append(
            f"    {name:<45} holds {holds} of {len(runs)}, median +-"
            f"{statistics.median(widths) if widths else float('nan'):.1f} %"
        )
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", default="1,2,3", help="timing.rounds settings to compare")
    parser.add_argument("--framework", default="pt", choices=("pt", "tf"))
    args = parser.parse_args(argv)
    out = REPO / "bench" / "results" / time.strftime("rerun-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    for rounds in (int(r) for r in args.rounds.split(",")):
        runs = [
            one_run(out, f"rounds{rounds}-run{i}", rounds, args.framework)
            for i in range(1, args.runs + 1)
        ]
        pooled = statistics.median(s for run in runs for s in run["samples_s"])
        print(
            f"\ntiming.rounds={rounds}, {args.framework}, {args.runs} runs of one cell "
            f"({' '.join(CELL)})"
        )
        print(
            f"  {'run':>3} {'median ms':>9} {'interval ms':>19} {'+-%':>6} {'holds':>5} "
            f"{'calls':>5} {'wall s':>6}  checks"
        )
        holds = 0
        for number, run in enumerate(runs, 1):
            low, high = run["ci95_low_s"], run["ci95_high_s"]
            inside = low is not None and low <= pooled <= high
            holds += inside
            print(
                f"  {number:>3} {run['median_s'] * 1e3:9.2f} "
                f"{(low or 0) * 1e3:9.2f}-{(high or 0) * 1e3:9.2f} "
                f"{run['ci95_halfwidth_pct'] or float('nan'):6.1f} {'yes' if inside else 'no':>5} "
                f"{run['timed_calls']:>5} {run['wall_s']:6.1f}  "
                f"{','.join(run['noise'].get('checks') or []) or '-'}"
            )
        walls = [run["wall_s"] for run in runs]
        print(
            f"  pooled median {pooled * 1e3:.2f} ms: inside {holds} of {len(runs)} intervals; "
            f"median half-width {statistics.median(r['ci95_halfwidth_pct'] for r in runs):.1f} %"
            f"; wall time per run {statistics.mean(walls):.1f} s"
        )
        print("  the same samples, scored by interval method:")
        print("\n".join(score(runs, pooled)))
    print(f"\nlogs and sweep folders: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
