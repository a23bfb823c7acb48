"""Compare two sweeps: ``python -m sweeper.compare BASE NEW [--fail-above 5%] [--format md]``.

Cells are matched by their coordinates, mode and the options that vary within either sweep;
options that differ between the sweeps but are constant within each (``timing.max_time_s``
raised for the new run) are listed above the table, not used to match. For each matched pair:

- time: the ratio of medians new/base with a 95 % bootstrap confidence interval (scipy's
  ``bootstrap``, percentile method, resampling both sets of raw samples), and the two-sided
  Mann–Whitney U test on the raw samples (scipy). A change is significant when p < ``ALPHA`` and
  the interval excludes 1: then ``better`` or ``worse``, else ``not significant``;
- memory: the change of the peak (no test: a peak is one number per cell);
- ``newly failing`` (ok before, failed now), ``fixed`` (the reverse), ``failing`` (both);
- ``not comparable`` when the two records come from different hardware or library versions
  (``COMPARABILITY_KEYS``; the row says which values differ; ``--allow KEY`` compares anyway,
  e.g. to measure a transformers upgrade).

Exit status: 1 when a gate is set and fails: ``--fail-above 5%`` (a significant slowdown of more
than 5 %), ``--fail-memory-above 5%`` (a peak more than 5 % higher), or either gate with a newly
failing cell; 2 for bad input; else 0. asv's ``compare`` exits 0 on a slowdown; CI needs this.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from ..record import Mode, Record, Status
from .render import FORMATS, Table, render
from .select import select
from .variation import (
    ABSENT,
    Variation,
    comparable_values,
    flat_config,
    group_key,
    ordered,
    variations,
)

__all__ = [
    "ALPHA",
    "COMPARABILITY_KEYS",
    "CellChange",
    "Comparison",
    "Mark",
    "compare_dirs",
    "compare_records",
    "main",
    "parse_percent",
]

# The usual 5 % level: one cell in twenty with no real change is flagged by chance.
ALPHA = 0.05
CONFIDENCE = 0.95
# Resamples of the bootstrap: the 2.5 % and 97.5 % quantiles of 2000 ratios move by well under
# 1 % of the interval's width between seeds; a fixed seed makes the output reproducible.
BOOTSTRAP_RESAMPLES = 2000
_SEED = 0
# Environment keys that make two measurements comparable: the same hardware, the same libraries.
COMPARABILITY_KEYS = (
    "cpu_model",
    "cpu_count",
    "system",
    "architecture",
    "gpu",
    "num_gpus",
    "gpu_driver_version",
    "cuda_driver_version",
    "framework_version",
    "transformers_version",
    "keras_version",
    "python_version",
)


class Mark(str, Enum):
    """The verdict on one matched cell."""

    better = "better"
    worse = "worse"
    same = "not significant"
    newly_failing = "newly failing"
    fixed = "fixed"
    failing = "failing"
    skipped = "skipped"
    not_comparable = "not comparable"
    no_samples = "no samples"
    only_base = "only in base"
    only_new = "only in new"


@dataclass
class CellChange:
    """One cell and mode of the two sweeps, and what changed."""

    label: str  # model label with varying keys, framework, device, batch, seq
    mode: str
    mark: Mark
    base: Optional[Record] = None
    new: Optional[Record] = None
    base_median_s: Optional[float] = None
    new_median_s: Optional[float] = None
    ratio: Optional[float] = None  # new / base median
    ratio_low: Optional[float] = None
    ratio_high: Optional[float] = None
    p_value: Optional[float] = None
    base_peak_mib: Optional[float] = None
    new_peak_mib: Optional[float] = None
    detail: str = ""

    @property
    def memory_change(self) -> Optional[float]:
        """new/base - 1 of the peak, when both have one."""
        if self.base_peak_mib and self.new_peak_mib is not None:
            return self.new_peak_mib / self.base_peak_mib - 1
        return None


@dataclass
class Comparison:
    """Every matched cell, and the config keys that differ between the two sweeps."""

    changes: List[CellChange]
    config_differences: List[str]

    def regressions(
        self, time_above: Optional[float], memory_above: Optional[float]
    ) -> List[Tuple[CellChange, str]]:
        """The cells that fail the gates, and why; no gate set, no regression."""
        if time_above is None and memory_above is None:
            return []
        found = []
        for change in self.changes:
            if change.mark is Mark.newly_failing:
                found.append((change, f"newly failing ({change.detail})"))
                continue
            if change.mark is Mark.not_comparable:
                continue
            if time_above is not None and change.mark is Mark.worse:
                if change.ratio - 1 > time_above:
                    found.append((change, f"{change.ratio - 1:+.1%} time"))
            memory = change.memory_change
            if memory_above is not None and memory is not None and memory > memory_above:
                found.append((change, f"{memory:+.1%} peak memory"))
        return found


def _samples(record: Record, mode: Mode) -> Optional[np.ndarray]:
    timing = record.time(mode)
    if timing is None or not timing.samples_s:
        return None
    return np.asarray(timing.samples_s, dtype=float)


def _ratio_of_medians(base, new, axis=-1):
    return np.median(new, axis=axis) / np.median(base, axis=axis)


def time_change(base: np.ndarray, new: np.ndarray) -> Tuple[float, float, float, float]:
    """(ratio of medians new/base, its CI low, high, Mann–Whitney p) from raw samples."""
    ratio = float(np.median(new) / np.median(base))
    p_value = float(stats.mannwhitneyu(new, base, alternative="two-sided").pvalue)
    interval = stats.bootstrap(
        (base, new),
        _ratio_of_medians,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        batch=200,
        random_state=np.random.default_rng(_SEED),
    ).confidence_interval
    return ratio, float(interval.low), float(interval.high), p_value


def _differences(base: Record, new: Record, allowed: Sequence[str]) -> List[str]:
    out = []
    for key in COMPARABILITY_KEYS:
        if key in allowed:
            continue
        a, b = base.environment.get(key), new.environment.get(key)
        if a != b:
            out.append(f"{key} {a} → {b}")
    return out


def _compare_pair(change: CellChange, mode: Mode, allowed: Sequence[str]) -> None:
    base, new = change.base, change.new
    base_ok = (base.result(mode) or base).status is Status.ok
    new_ok = (new.result(mode) or new).status is Status.ok
    if base.time(mode):
        change.base_median_s = base.time(mode).median_s
    if new.time(mode):
        change.new_median_s = new.time(mode).median_s
    base_memory, new_memory = base.memory(mode), new.memory(mode)
    change.base_peak_mib = base_memory.headline_mib if base_memory else None
    change.new_peak_mib = new_memory.headline_mib if new_memory else None
    if not base_ok or not new_ok:
        status = (new.result(mode) or new).status if not new_ok else None
        if base_ok:
            change.mark = Mark.newly_failing
            change.detail = (
                f"{status.value}: {(new.error or '').splitlines()[0] if new.error else ''}"
            )
        elif new_ok:
            change.mark = Mark.fixed
        else:
            statuses = {(r.result(mode) or r).status for r in (base, new)}
            change.mark = Mark.skipped if statuses == {Status.skipped} else Mark.failing
        return
    differences = _differences(base, new, allowed)
    if differences:
        change.mark = Mark.not_comparable
        change.detail = "; ".join(differences)
        return
    base_samples, new_samples = _samples(base, mode), _samples(new, mode)
    if base_samples is None or new_samples is None:
        change.mark = Mark.no_samples if base.wants(mode, "time") else Mark.same
        return
    ratio, low, high, p_value = time_change(base_samples, new_samples)
    change.ratio, change.ratio_low, change.ratio_high, change.p_value = ratio, low, high, p_value
    significant = p_value < ALPHA and (low > 1 or high < 1)
    change.mark = (Mark.worse if ratio > 1 else Mark.better) if significant else Mark.same


def _merged_variation(base: Sequence[Record], new: Sequence[Record]) -> Variation:
    """The keys that vary within either sweep (per framework and device), merged."""
    options: Dict[str, None] = {}
    model_keys: Dict[str, Dict[str, None]] = {}
    for records in (base, new):
        for variation in variations(records).values():
            options.update(dict.fromkeys(variation.options))
            for label, keys in variation.model_keys:
                model_keys.setdefault(label, {}).update(dict.fromkeys(keys))
    return Variation(
        options=tuple(options),
        model_keys=tuple((label, tuple(keys)) for label, keys in model_keys.items()),
    )


def _config_differences(base, new, varying: Variation) -> List[str]:
    """Keys constant within each sweep that differ between them: ``key: a → b``."""
    shown = set(varying.columns)

    def values(records):
        out: Dict[str, set] = {}
        for record in records:
            for key, value in comparable_values(flat_config(record.config)).items():
                out.setdefault(key, set()).add(value)
        return out

    a, b = values(base), values(new)
    lines = []
    for key in dict.fromkeys([*a, *b]):
        if key in shown or a.get(key) == b.get(key):
            continue
        before = ", ".join(sorted(a.get(key, {ABSENT})))
        after = ", ".join(sorted(b.get(key, {ABSENT})))
        lines.append(f"{key}: {before} → {after}")
    return lines


def compare_records(
    base: Sequence[Record], new: Sequence[Record], allowed: Sequence[str] = ()
) -> Comparison:
    """Match the cells of two sets of records and judge each change (module docstring)."""
    varying = _merged_variation(base, new)

    def keyed(records):
        out: Dict[tuple, Tuple[Record, Mode]] = {}
        for record in ordered(records, variations(records)):
            for mode in record.modes:
                cell = record.cell
                key = (
                    varying.label(record),
                    *group_key(record),
                    cell.batch_size,
                    cell.sequence_length,
                    mode.value,
                )
                out[key] = (record, mode)
        return out

    a, b = keyed(base), keyed(new)
    changes = []
    for key in dict.fromkeys([*a, *b]):
        label = f"{key[0]} {key[1]} {key[2]} b{key[3]} s{key[4]}"
        if key not in b:
            changes.append(CellChange(label, key[5], Mark.only_base, base=a[key][0]))
            continue
        if key not in a:
            changes.append(CellChange(label, key[5], Mark.only_new, new=b[key][0]))
            continue
        change = CellChange(label, key[5], Mark.same, base=a[key][0], new=b[key][0])
        _compare_pair(change, a[key][1], allowed)
        changes.append(change)
    return Comparison(changes, _config_differences(base, new, varying))


def compare_dirs(
    base_dir: Path, new_dir: Path, allowed: Sequence[str] = (), all_records: bool = False
) -> Comparison:
    """Compare the latest runs of two sweep folders."""
    base = select(Path(base_dir), use_manifest=not all_records).records
    new = select(Path(new_dir), use_manifest=not all_records).records
    return compare_records(base, new, allowed)


# -- rendering -----------------------------------------------------------------------------------


def _seconds(value: Optional[float]) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def _memory(change: CellChange) -> str:
    a, b = change.base_peak_mib, change.new_peak_mib
    if a is None and b is None:
        return ""
    text = f"{'?' if a is None else f'{a:.0f}'} → {'?' if b is None else f'{b:.0f}'} MB"
    memory = change.memory_change
    return text + (f" ({memory:+.1%})" if memory is not None else "")


def _ratio(change: CellChange) -> str:
    if change.ratio is None:
        return ""
    return f"{change.ratio:.3f} ({change.ratio_low:.3f}–{change.ratio_high:.3f})"


def _p(change: CellChange) -> str:
    if change.p_value is None:
        return ""
    return f"{change.p_value:.2g}"


def comparison_table(comparison: Comparison) -> Table:
    rows = []
    for change in comparison.changes:
        verdict = change.mark.value + (f": {change.detail}" if change.detail else "")
        rows.append(
            [
                f"{change.label} {change.mode}",
                _seconds(change.base_median_s),
                _seconds(change.new_median_s),
                _ratio(change),
                _p(change),
                verdict,
                _memory(change),
            ]
        )
    return Table(
        title="Time (median) and peak memory, new against base",
        stub="cell",
        columns=["base", "new", "new/base (95 % CI)", "p", "verdict", "peak memory"],
        align="rrrrll",
        rows=rows,
        notes=[
            f"verdict: Mann–Whitney U on the raw samples, p < {ALPHA:g}, and a bootstrap 95 % "
            "CI of the ratio of medians that excludes 1"
        ],
    )


def render_comparison(
    comparison: Comparison,
    fmt: str,
    base_dir: Path,
    new_dir: Path,
    regressions: Sequence[Tuple[CellChange, str]] = (),
    gates: str = "",
) -> str:
    counts: Dict[str, int] = {}
    for change in comparison.changes:
        counts[change.mark.value] = counts.get(change.mark.value, 0) + 1
    preamble = [f"base: {base_dir}", f"new:  {new_dir}"]
    differences = comparison.config_differences
    preamble += [f"config differs: {line}" for line in differences[:_LIST_AT_MOST]]
    if len(differences) > _LIST_AT_MOST:
        preamble.append(f"config differs: and {len(differences) - _LIST_AT_MOST} more keys")
    summary = f"{len(comparison.changes)} cells: " + ", ".join(
        f"{n} {mark}" for mark, n in counts.items()
    )
    tail = [summary]
    if gates:
        if regressions:
            tail.append(f"FAIL ({gates}): {len(regressions)} regression(s)")
            tail += [f"- {c.label} {c.mode}: {why}" for c, why in regressions]
        else:
            tail.append(f"PASS ({gates})")
    text = render([comparison_table(comparison)], fmt, preamble=preamble)
    if fmt == "md":  # line breaks, and a blank line before the list of regressions
        listed = [line for line in tail if line.startswith("- ")]
        lines = [line for line in tail if not line.startswith("- ")]
        return (
            text
            + "\n"
            + "  \n".join(lines)
            + "\n"
            + "".join(["\n", *(f"{line}\n" for line in listed)] if listed else [])
        )
    if fmt == "text":
        return text + "\n" + "\n".join(tail) + "\n"
    comment = "%" if fmt == "latex" else "#"
    return text + "".join(f"{comment} {line}\n" for line in tail)


# Config differences listed above the table before "and N more keys".
_LIST_AT_MOST = 8
_PERCENT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*%?\s*$")


def parse_percent(text: str) -> float:
    """``5%`` or ``5`` -> 0.05. ValueError names the value and the form expected."""
    match = _PERCENT.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a percentage; give e.g. 5% (or 5)")
    return float(match.group(1)) / 100


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.compare",
        description="Compare two sweeps cell by cell: time (with significance) and peak memory.",
    )
    parser.add_argument("base", type=Path, help="the sweep folder to compare against")
    parser.add_argument("new", type=Path, help="the sweep folder with the change")
    parser.add_argument(
        "--fail-above",
        metavar="PCT",
        help="exit 1 if a cell is significantly slower by more than PCT (e.g. 5%%), or newly "
        "failing",
    )
    parser.add_argument(
        "--fail-memory-above",
        metavar="PCT",
        help="exit 1 if a cell's peak memory grew by more than PCT (e.g. 5%%), or it is newly "
        "failing",
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="default: text")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="KEY",
        help="compare even when this environment key differs (e.g. transformers_version); "
        "repeatable",
    )
    parser.add_argument(
        "--all", action="store_true", help="every record, not only each folder's latest run"
    )
    args = parser.parse_args(argv)
    try:
        time_above = parse_percent(args.fail_above) if args.fail_above else None
        memory_above = parse_percent(args.fail_memory_above) if args.fail_memory_above else None
    except ValueError as exc:
        print(f"sweeper.compare: bad threshold: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.allow) - set(COMPARABILITY_KEYS))
    if unknown:
        print(
            f"sweeper.compare: --allow {', '.join(unknown)}: not a key that decides "
            f"comparability; known: {', '.join(COMPARABILITY_KEYS)}",
            file=sys.stderr,
        )
        return 2
    for folder in (args.base, args.new):
        if not folder.is_dir() or not select(folder, use_manifest=not args.all).records:
            print(
                f"sweeper.compare: no records under {folder}; give a sweep folder "
                "(hydra.sweep.dir of a finished or partial sweep)",
                file=sys.stderr,
            )
            return 2
    comparison = compare_dirs(args.base, args.new, args.allow, args.all)
    regressions = comparison.regressions(time_above, memory_above)
    gates = ", ".join(
        text
        for text in (
            f"time +{time_above:.1%}" if time_above is not None else "",
            f"memory +{memory_above:.1%}" if memory_above is not None else "",
        )
        if text
    )
    sys.stdout.write(
        render_comparison(comparison, args.format, args.base, args.new, regressions, gates)
    )
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
