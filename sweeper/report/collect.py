"""Merge a sweep folder's records into the old tool's tables and CSV files.

``python -m sweeper.collect SWEEP_DIR`` (also run by itself at the end of every multirun).
Reads only ``record.json`` files, wherever they sit under SWEEP_DIR, never folder names, and
shows those of the folder's latest run (its ``sweep.json``; sweeper.report.select), saying which
records it left out and how many cells have no record yet; ``--all`` shows every record. Prints,
per framework and device, the sections the cells asked for and the environment block, then the
cells that did not succeed. Rows show whatever else varies across the cells (an option, a model
key: sweeper.report.variation), so no two rows look alike. Writes ``inference_time.csv``,
``inference_memory.csv``, ``train_time.csv``, ``train_memory.csv``, ``env.csv`` and
``summary.csv`` (every cell, every statistic; written with pandas) into SWEEP_DIR.
Exit status: 0 all cells shown ok or skipped, 1 some cell shown failed (error, killed, oom,
timeout), 2 nothing to collect. Imports neither torch nor TensorFlow.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..fileio import write_text_atomic
from ..manifest import MANIFEST_NAME, ManifestJob
from ..record import PER_RUN_ENV_KEYS, RECORD_NAME, Mode, Record, Status, memory_marks
from .select import LeftOut, load_records, select
from .tables import (
    MEMORY_HEADER,
    SEED_KEYS,
    TIME_HEADER,
    Row,
    env_csv,
    render_env,
    render_section,
    results_csv,
    title,
)
from .variation import format_value, group_key, label_of, ordered, variations

__all__ = ["Collection", "collect", "load_records", "main", "summary_csv"]

# (mode, measurement, section label, CSV file name), in the old tool's order.
SECTIONS = (
    (Mode.inference, "time", "INFERENCE - SPEED - RESULT", "inference_time.csv"),
    (Mode.inference, "memory", "INFERENCE - MEMORY - RESULT", "inference_memory.csv"),
    (Mode.training, "time", "TRAIN - SPEED - RESULTS", "train_time.csv"),
    (Mode.training, "memory", "TRAIN - MEMORY - RESULTS", "train_memory.csv"),
)
# Keys that differ between any two runs; all others must agree across a sweep or we warn.
_PER_RUN_KEYS = PER_RUN_ENV_KEYS
EXTRA_COLUMNS = ("framework", "device")
# Left-out records listed by path before "and N more": enough to find them, not a flood.
_LIST_AT_MOST = 5


@dataclass
class Collection:
    """What a sweep folder holds and what collecting it printed and wrote."""

    sweep_dir: Path
    records: List[Record] = field(default_factory=list)
    unreadable: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    left_out: List[LeftOut] = field(default_factory=list)
    missing: List[ManifestJob] = field(default_factory=list)
    missing_count: int = 0  # cells of the latest run with no record yet
    total_cells: Optional[int] = None  # from the manifest; None without one
    resume_command: Optional[str] = None
    report: str = ""
    written: List[Path] = field(default_factory=list)

    @property
    def failed(self) -> List[Record]:
        return [r for r in self.records if r.status.failed]

    @property
    def exit_code(self) -> int:
        if not self.records:
            return 2
        return 1 if self.failed else 0


def _value(record: Record, mode: Mode, measurement: str) -> Tuple[Optional[float], bool]:
    if measurement == "time":
        timing = record.time(mode)
        return (timing.median_s, timing.noisy) if timing else (None, False)
    memory = record.memory(mode)
    return (memory.headline_mib if memory else None), False


def _memory_source(record: Record, mode: Mode) -> Optional[str]:
    memory = record.memory(mode)
    return memory.headline_source if memory else None


def _describe(values: Sequence[Any]) -> Any:
    counts = Counter(str(v) for v in values)
    if len(counts) == 1:
        return values[0]
    return "; ".join(f"{v} ({n} cell{'s' if n > 1 else ''})" for v, n in counts.most_common())


def _env_items(records: Sequence[Record]) -> Tuple[List[Tuple[str, Any]], List[str]]:
    """The environment block of a group and the keys on which its records disagree."""
    envs = [r.environment for r in records]
    earliest = min(envs, key=lambda e: (e.get("date", ""), e.get("time", "")))
    items, differing = [], []
    keys = [k for k in SEED_KEYS if any(k in e for e in envs)]
    keys += sorted({k for e in envs for k in e} - set(SEED_KEYS))
    for key in keys:
        values = [e.get(key) for e in envs]
        if key in _PER_RUN_KEYS:
            if key in SEED_KEYS:
                items.append((key, earliest.get(key)))
            continue
        if len({str(v) for v in values}) > 1:
            differing.append(key)
            items.append((key, _describe(values)))
        elif key in SEED_KEYS:
            items.append((key, values[0]))
    return items, differing


def _empty_report(result: Collection) -> str:
    sweep_dir = result.sweep_dir
    readable = len(result.left_out)
    text = f"sweeper.collect: no {RECORD_NAME} under {sweep_dir}"
    if readable:
        text = (
            f"sweeper.collect: none of the {readable} {RECORD_NAME} under {sweep_dir} is part of "
            f"its latest run ({MANIFEST_NAME})"
        )
    elif result.unreadable:
        text += f" that could be read ({len(result.unreadable)} could not)"
    text += (
        f"; run a sweep there first (python -m sweeper OVERRIDES hydra.sweep.dir={sweep_dir} -m)"
    )
    if readable:
        text += f", or show every record: python -m sweeper.collect --all {sweep_dir}"
    return text + "".join(f"\nskipped unreadable record: {u}" for u in result.unreadable)


def collect(sweep_dir: Path, write: bool = True, use_manifest: bool = True) -> Collection:
    """Read the records of ``sweep_dir``'s latest run; render the report; write the CSV files.

    ``use_manifest=False`` reports every record (the newest of each cell and config).
    """
    sweep_dir = Path(sweep_dir)
    result = Collection(sweep_dir=sweep_dir)
    if not sweep_dir.is_dir():
        result.report = f"sweeper.collect: {sweep_dir} is not a folder; give a sweep folder"
        return result
    selection = select(sweep_dir, use_manifest=use_manifest)
    by_group = variations(selection.records)
    result.records = ordered(selection.records, by_group)
    result.unreadable = selection.unreadable
    result.left_out = selection.left_out
    result.missing = selection.missing
    result.missing_count = selection.missing_count
    result.total_cells = selection.total_cells
    result.resume_command = selection.manifest.command if selection.manifest else None
    result.warnings.extend(selection.notes)
    if not result.records:
        result.report = _empty_report(result) + _missing_text(result)
        return result

    groups: Dict[Tuple[str, str], List[Record]] = {}
    for record in result.records:
        groups.setdefault(group_key(record), []).append(record)
    several = len(groups) > 1
    options = _csv_options(by_group)
    parts: List[str] = []
    csv_rows: Dict[str, List[Row]] = {}
    env_text = io.StringIO()
    for (framework, device), members in groups.items():
        variation = by_group[(framework, device)]
        if several:
            parts.append(f"\n######## framework={framework} device={device} ########")
        for mode, measurement, label, filename in SECTIONS:
            chosen = [r for r in members if r.wants(mode, measurement)]
            if not chosen:
                continue
            rows, csv_section = [], []
            sources = [_memory_source(r, mode) if measurement == "memory" else None for r in chosen]
            marks, notes = memory_marks(sources)  # only when the figures' sources differ
            for record, source in zip(chosen, sources):
                value, noisy = _value(record, mode, measurement)
                cell = record.cell
                extra = (framework, device) if several else ()
                values = variation.values(record)
                row = Row(
                    model=label_of(record, by_group),
                    batch_size=cell.batch_size,
                    sequence_length=cell.sequence_length,
                    value=value,
                    noisy=noisy,
                    extra=extra,
                    mark=marks.get(source, ""),
                )
                rows.append(row)
                csv_section.append(
                    Row(
                        model=variation.model_label(record),
                        batch_size=cell.batch_size,
                        sequence_length=cell.sequence_length,
                        value=value,
                        noisy=noisy,
                        extra=(*extra, *(values.get(k, "") for k in options)),
                    )
                )
            header = TIME_HEADER if measurement == "time" else MEMORY_HEADER
            parts.append(render_section(label, header, rows, notes))
            csv_rows.setdefault(filename, []).extend(csv_section)
        fits = _fits(members)
        if fits:
            parts.append(title("HOW COST GROWS") + "\n\n" + "\n".join(fits))
        items, differing = _env_items(members)
        parts.append(render_env(items))
        env_text.write(env_csv(items, extra=(framework, device) if several else ()))
        if differing:
            result.warnings.append(
                f"WARNING: the {framework}/{device} records of {sweep_dir} come from different "
                f"environments ({', '.join(differing)} differ); the environment block lists "
                "each value with its number of cells"
            )

    parts.extend(f"\n{w}" for w in result.warnings)
    parts.extend(f"\nskipped unreadable record: {u}" for u in result.unreadable)
    parts.append(_left_out_text(result))
    parts.append(_summary(result))
    parts.append(_missing_text(result))
    result.report = "\n".join(p for p in parts if p)

    if write:
        columns = (*(EXTRA_COLUMNS if several else ()), *options)
        files = {
            filename: results_csv(rows, filename.endswith("time.csv"), columns)
            for filename, rows in csv_rows.items()
        }
        files["env.csv"] = env_text.getvalue()
        files["summary.csv"] = summary_csv(result.records, sweep_dir)
        for filename, text in files.items():
            write_text_atomic(sweep_dir / filename, text)
            result.written.append(sweep_dir / filename)
    return result


def _fits(records: Sequence[Record]) -> List[str]:
    """The scaling fits of a group's lines that have enough points (sweeper.report.scaling)."""
    from .frame import records_frame  # pandas: only once there are records to fit
    from .scaling import scaling

    fits = scaling(records_frame(records))
    if fits.empty:
        return []
    has_fit = fits["time_exponent"].notna() | fits["memory_exponent"].notna()
    return list(fits.loc[has_fit, "text"])


def _csv_options(by_group: Dict[Tuple[str, str], Any]) -> Tuple[str, ...]:
    """Option columns of the old tool's CSV files: varying options (model keys are in the
    model column's label, as the tables print them)."""
    columns: Dict[str, None] = {}
    for variation in by_group.values():
        columns.update(dict.fromkeys(variation.options))
    return tuple(columns)


def _relative(path: Optional[Path], root: Path) -> str:
    if path is None:
        return "?"
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _left_out_text(result: Collection) -> str:
    """Which records the tables do not show and why, grouped by reason."""
    if not result.left_out:
        return ""
    by_reason: Dict[str, List[LeftOut]] = {}
    for item in result.left_out:
        by_reason.setdefault(item.reason, []).append(item)
    lines = []
    for reason, items in by_reason.items():
        paths = [_relative(i.record.path, result.sweep_dir) for i in items]
        shown = ", ".join(paths[:_LIST_AT_MOST])
        more = f" and {len(paths) - _LIST_AT_MOST} more" if len(paths) > _LIST_AT_MOST else ""
        plural = "s" if len(items) > 1 else ""
        lines.append(f"Left out {len(items)} record{plural}: {reason}: {shown}{more}")
    if result.total_cells is not None:
        lines.append(
            f"(python -m sweeper.collect --all {result.sweep_dir} shows every record, the "
            "newest of each cell and config)"
        )
    return "\n" + "\n".join(lines)


def _missing_text(result: Collection) -> str:
    if not result.missing_count:
        return ""
    cells = "cell has" if result.total_cells == 1 else "cells have"
    return (
        f"\n{result.missing_count} of {result.total_cells} {cells} no record yet; "
        f"resume with: {result.resume_command}"
    )


def _summary(result: Collection) -> str:
    counts = Counter(r.status.value for r in result.records)
    line = f"\n{len(result.records)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    others = [r for r in result.records if r.status is not Status.ok]
    if not others:
        return line
    lines = [line, f"Cells that did not succeed (records under {result.sweep_dir}):"]
    for record in others:
        cell = record.cell
        lines.append(
            f"- {record.status.value}: {cell.model} batch={cell.batch_size} "
            f"seq={cell.sequence_length} [{cell.framework}/{cell.device}]: "
            f"{record.error} ({_relative(record.path, result.sweep_dir)})"
        )
    return "\n".join(lines)


SUMMARY_COLUMNS = (
    "model",
    "batch_size",
    "sequence_length",
    "framework",
    "device",
    "mode",
    "status",
    "median_s",
    "min_s",
    "iqr_pct",
    "ci95_halfwidth_pct",
    "timed_calls",
    "noisy",
    "first_call_s",
    "peak_mib",
    "peak_increase_mib",
    "peak_increase_anon_mib",
    "error",
    "record",
)
_SUMMARY_FLOATS = (
    "median_s",
    "min_s",
    "iqr_pct",
    "ci95_halfwidth_pct",
    "first_call_s",
    "peak_mib",
    "peak_increase_mib",
    "peak_increase_anon_mib",
)


def _number(value: Optional[float]) -> str:
    """A float rounded to 12 significant digits, written as Python writes the shortest float
    (``227.4``, not ``227.4000000000001``): no binary noise in the CSV."""
    return "" if value is None or value != value else repr(float(f"{value:.12g}"))


def _option_text(value: Any) -> str:
    """An option's value as the tables and the other CSV files write it (``true``, ``384``)."""
    return "" if value is None else format_value(value)


def summary_csv(records: Sequence[Record], root: Path) -> str:
    """One row per cell and mode with the main statistics, and a column per varying option:
    the frame of sweeper.report.frame, written with pandas."""
    from .frame import records_frame  # pandas: only when the CSV is written

    frame = records_frame(records)
    options = frame.attrs["option_columns"]
    columns = [*SUMMARY_COLUMNS[:5], *options, *SUMMARY_COLUMNS[5:]]
    out = frame.assign(
        record=[_relative(Path(p), root) if p else "" for p in frame["record"]],
        **{name: frame[name].map(_option_text) for name in options},
        error=frame["error"].fillna(""),
        timed_calls=frame["timed_calls"].astype("string").fillna(""),
        noisy=frame["noisy"].astype("string").fillna(""),
        **{name: frame[name].map(_number) for name in _SUMMARY_FLOATS},
    )[columns]
    # csv's default \r\n line ends, as the old tool's files and our other CSV files have
    return out.to_csv(index=False, lineterminator="\r\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.collect",
        description="Print a sweep folder's tables and write its CSV files.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (hydra.sweep.dir)")
    parser.add_argument("--no-write", action="store_true", help="print only; write no CSV")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"every record under the folder, not only its latest run's ({MANIFEST_NAME}); "
        "the newest of each cell and config",
    )
    args = parser.parse_args(argv)
    result = collect(args.sweep_dir, write=not args.no_write, use_manifest=not args.all)
    print(result.report, file=sys.stdout if result.records else sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
