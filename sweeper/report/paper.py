"""Tables for a paper: ``python -m sweeper.report SWEEP_DIR --format md|latex|csv|text``.

Models (with the options that vary) as rows, sequence lengths as columns (batch sizes when the
sweep has more of them), one table per framework, device, batch size (or length), mode and
measurement: the median time with the half-width of its 95 % CI (``6.1 ± 0.06``), ``*`` on a
noisy median, the peak memory, ``N/A`` for a cell that did not succeed with a note saying why.
Under them, how cost grows (sweeper.report.scaling). Above them, where the numbers come from: the
command (from the sweep's manifest) or the sweep preset, the sweeper version and commit, the
hardware and the libraries, as the records say. LaTeX is booktabs (``\\toprule``, ``\\midrule``,
``\\bottomrule``), one ``table`` float per table, ready to ``\\input``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd

from ..measure.stats import NOISY_IQR_PCT
from ..record import Record
from .frame import other_axis, selection_frame, x_axis
from .render import FORMATS, Table, render
from .scaling import MIN_POINTS, POOR_FIT_R2, scaling
from .select import Selection, select

__all__ = ["main", "paper_tables", "provenance", "report", "report_selection"]

_AXIS_TITLES = {"sequence_length": "sequence length", "batch_size": "batch size"}
_AXIS_SHORT = {"sequence_length": "seq", "batch_size": "batch"}
_FRAMEWORKS = {"pt": "PyTorch", "tf": "TensorFlow"}
NOISY_NOTE = f"* noisy: IQR/median > {NOISY_IQR_PCT:g} % or the median's 95 % CI too wide"
# Times are shown in ms when every median of a table is below one second.
_MS_BELOW_S = 1.0


def _significant(value: float, digits: int = 3) -> str:
    """``0.00612`` -> ``0.00612``, ``6.1234`` -> ``6.12``, ``1234.5`` -> ``1234``: trimmed."""
    if value >= 10 ** (digits - 1):
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def with_uncertainty(value: float, halfwidth: float) -> str:
    """``6.10 ± 0.06``: the half-width to one significant figure (two when it starts with 1),
    the value to the same decimal place, as measurements are usually written."""
    if not halfwidth > 0:
        return _significant(value)
    digits = -math.floor(math.log10(halfwidth))
    if f"{halfwidth:.{max(digits, 0)}f}".lstrip("0.").startswith("1"):
        digits += 1
    digits = max(digits, 0)
    return f"{value:.{digits}f} ± {halfwidth:.{digits}f}"


def _time_cell(row: pd.Series, scale: float) -> str:
    median = row["median_s"] * scale
    if pd.notna(row["ci95_halfwidth_pct"]):
        text = with_uncertainty(median, median * row["ci95_halfwidth_pct"] / 100)
    else:
        text = _significant(median)
    if row["noisy"] is True:
        text += "*"
    return text


def _failure(row: pd.Series, axis: str) -> str:
    error = str(row["error"]).splitlines()[0] if pd.notna(row["error"]) else ""
    where = f"{row['label']}, {_AXIS_SHORT[axis]} {row[axis]}"
    return f"N/A: {where}: {row['status']}" + (f" ({error})" if error else "")


def _table(
    cells: pd.DataFrame, axis: str, measurement: str, title: str, key: str
) -> Optional[Table]:
    value = "median_s" if measurement == "time" else "peak_mib"
    if cells[value].notna().sum() == 0:
        return None
    ok = cells["status"] == "ok"
    scale, unit = 1.0, "s"
    if measurement == "time" and cells.loc[ok, "median_s"].max() < _MS_BELOW_S:
        scale, unit = 1000.0, "ms"
    columns = sorted(cells[axis].unique())
    rows, notes, noisy = [], [], False
    for label, line in cells.groupby("label", sort=False):
        by_x = {r[axis]: r for _, r in line.iterrows()}
        texts = []
        for x in columns:
            row = by_x.get(x)
            if row is None:
                texts.append("")
            elif row["status"] != "ok":
                texts.append("N/A")
                notes.append(_failure(row, axis))
            elif pd.isna(row[value]):
                texts.append("–")
            elif measurement == "time":
                texts.append(_time_cell(row, scale))
                noisy = noisy or row["noisy"] is True
            else:
                texts.append(f"{row[value]:.0f}")
        rows.append([label, *texts])
    if noisy:
        notes.insert(0, NOISY_NOTE)
    what = (
        f"time in {unit} (median ± 95 % CI half-width)"
        if measurement == "time"
        else "peak memory in MB"
    )
    return Table(
        title=f"{title}: {what}",
        key=f"{key}-{measurement}",
        stub="model",
        columns=[str(c) for c in columns],
        rows=rows,
        notes=list(dict.fromkeys(notes)),
        column_title=_AXIS_TITLES[axis],
        column_prefix=_AXIS_SHORT[axis],
    )


def paper_tables(frame: pd.DataFrame) -> List[Table]:
    """The result tables and the scaling table of a sweep's frame (sweeper.load)."""
    if frame.empty:
        return []
    axis = x_axis(frame)
    other = other_axis(axis)
    tables = []
    groups = frame.groupby(["framework", "device", other, "mode"], sort=False)
    for (framework, device, fixed, mode), cells in groups:
        name = _FRAMEWORKS.get(framework, framework)
        title = f"{mode.capitalize()}, {name}, {device}, {_AXIS_TITLES[other]} {fixed}"
        key = f"{mode}-{framework}-{device}-{_AXIS_SHORT[other][0]}{fixed}"
        for measurement in ("time", "memory"):
            table = _table(cells, axis, measurement, title, key)
            if table is not None:
                tables.append(table)
    fits = _scaling_table(frame, axis)
    if fits is not None:
        tables.append(fits)
    return tables


def _number(value: float, fmt: str) -> str:
    return "" if pd.isna(value) else format(value, fmt)


def _scaling_table(frame: pd.DataFrame, axis: str) -> Optional[Table]:
    fits = scaling(frame, axis)
    if fits.empty or fits["time_points"].max() < MIN_POINTS:
        return None
    other = other_axis(axis)
    rows, poor = [], False
    for _, fit in fits.iterrows():
        if pd.isna(fit["time_exponent"]) and pd.isna(fit["memory_exponent"]):
            continue
        poor = poor or bool(fit["poor_fit"])
        rows.append(
            [
                f"{fit['label']} {fit['framework']} {fit['device']} "
                f"{_AXIS_SHORT[other][0]}{fit[other]} {fit['mode']}",
                _number(fit["time_exponent"], ".2f"),
                _number(fit["time_r2"], ".2f"),
                _number(fit["memory_exponent"], ".2f"),
                _number(fit["memory_r2"], ".2f"),
                _number(fit["mib_per_token"], ".3g"),
            ]
        )
    notes = [
        f"Exponent k of a least-squares fit cost ∝ {_AXIS_SHORT[axis]}^k in log-log over the "
        f"successful cells ({MIN_POINTS} or more); memory: the peak's increase over the built "
        "model; MB per token: slope of the peak against batch × sequence length."
    ]
    if poor:
        notes.append(f"R² below {POOR_FIT_R2:g}: a poor fit, the cost follows no single power law.")
    return Table(
        title=f"How cost grows with {_AXIS_TITLES[axis]}",
        key="scaling",
        stub="line",
        columns=["time exp.", "R²", "memory exp.", "R²", "MB/token"],
        rows=rows,
        notes=notes,
    )


def _values(records: Sequence[Record], *keys: str) -> str:
    """The environment's value of the first key present, every distinct one with its count."""
    values = []
    for record in records:
        env = record.environment
        values.append(next((env[k] for k in keys if env.get(k) is not None), None))
    counts = Counter(str(v) for v in values if v is not None)
    if not counts:
        return "unknown"
    if len(counts) == 1:
        return next(iter(counts))
    return " / ".join(f"{v} ({n} cell{'s' if n > 1 else ''})" for v, n in counts.most_common())


def provenance(selection: Selection) -> List[str]:
    """Where the numbers come from: command, sweeper version and commit, hardware, software."""
    records = selection.records
    lines = [f"sweeper report of {selection.sweep_dir}: {len(records)} cells"]
    if selection.manifest is not None:
        lines.append(f"Command: {selection.manifest.command}")
    else:
        common = set.intersection(*(set(r.overrides) for r in records)) if records else set()
        shown = [o for o in records[0].overrides if o in common] if records else []
        lines.append(
            "Command: not recorded (no sweep.json); overrides common to every cell: "
            + (" ".join(shown) or "none")
        )
    presets = sorted({str(r.hydra_choices.get("sweep")) for r in records} - {"None"})
    if presets:
        lines.append("Sweep YAML: " + ", ".join(f"conf/sweep/{p}.yaml" for p in presets))
    lines.append(
        f"sweeper version {_values(records, 'sweeper_version')}, "
        f"commit {_values(records, 'sweeper_commit')}"
    )
    hardware = (
        f"Hardware: {_values(records, 'cpu_model', 'cpu')}, "
        f"{_values(records, 'cpu_count')} CPUs, {_values(records, 'cpu_ram_mb')} MB RAM"
    )
    if any(r.environment.get("gpu") for r in records):
        hardware += (
            f"; GPU {_values(records, 'gpu')}, {_values(records, 'gpu_ram_mb')} MB, "
            f"driver {_values(records, 'gpu_driver_version')}"
        )
    lines.append(hardware + f"; host {_values(records, 'hostname')}")
    lines.append(
        f"Software: {_values(records, 'framework')} {_values(records, 'framework_version')}, "
        f"transformers {_values(records, 'transformers_version')}, "
        f"Python {_values(records, 'python_version')}, {_values(records, 'system')} "
        f"{_values(records, 'kernel')}"
    )
    # From the first cell's start to the last one's end (its last round's, with rounds).
    starts = [r.started_utc for r in records if r.started_utc]
    if starts:
        first = min(starts)
        last = max(r.finished_utc or r.started_utc for r in records if r.started_utc)
        lines.append(f"Measured: {first if first == last else f'{first} to {last}'}")
    return lines


def report(sweep_dir: Path, fmt: str = "md", all_records: bool = False) -> str:
    """The paper tables of a sweep folder in ``fmt`` (text, md, latex, csv)."""
    return report_selection(select(Path(sweep_dir), use_manifest=not all_records), fmt)


def report_selection(selection: Selection, fmt: str) -> str:
    """The paper tables of selected records, with their provenance, in ``fmt``."""
    frame = selection_frame(selection)
    extra: List[str] = []
    if selection.missing_count:
        extra.append(
            f"Partial: {selection.missing_count} of {selection.total_cells} cells have no record "
            "yet"
        )
    return render(paper_tables(frame), fmt, preamble=provenance(selection) + extra)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.report",
        description="Tables of a sweep for a paper or a pull request, with their provenance.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (hydra.sweep.dir)")
    parser.add_argument("--format", choices=FORMATS, default="md", help="default: md")
    parser.add_argument("--output", "-o", type=Path, help="write to this file, not stdout")
    parser.add_argument(
        "--all", action="store_true", help="every record, not only the latest run's"
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"sweeper.report: {args.sweep_dir} is not a folder; give a sweep folder",
            file=sys.stderr,
        )
        return 2
    selection = select(args.sweep_dir, use_manifest=not args.all)
    if not selection.records:
        print(
            f"sweeper.report: no records of the latest run under {args.sweep_dir}"
            + (
                f" ({len(selection.left_out)} left out; --all shows them)"
                if selection.left_out
                else ""
            ),
            file=sys.stderr,
        )
        return 2
    text = report_selection(selection, args.format)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
