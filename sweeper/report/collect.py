"""Merge a sweep folder's records into the old tool's tables and CSV files.

``python -m sweeper.collect SWEEP_DIR`` (also run by itself at the end of every multirun).
Reads only ``record.json`` files, wherever they sit under SWEEP_DIR, never folder names; a
partial sweep collects what it has. Prints, per framework and device, the sections the cells
asked for and the environment block, then the cells that did not succeed. Writes
``inference_time.csv``, ``inference_memory.csv``, ``train_time.csv``, ``train_memory.csv``,
``env.csv`` and ``summary.csv`` (every cell, every statistic) into SWEEP_DIR.
Exit status: 0 all cells ok or skipped, 1 some cell failed (error, killed, oom, timeout), 2
nothing to collect. Imports neither torch nor TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..fileio import write_text_atomic
from ..record import (
    PER_RUN_ENV_KEYS,
    RECORD_NAME,
    Mode,
    Record,
    RecordError,
    Status,
    memory_marks,
    read_record,
)
from .tables import (
    MEMORY_HEADER,
    SEED_KEYS,
    TIME_HEADER,
    Row,
    env_csv,
    render_env,
    render_section,
    results_csv,
)

__all__ = ["Collection", "collect", "load_records", "main"]

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


@dataclass
class Collection:
    """What a sweep folder holds and what collecting it printed and wrote."""

    sweep_dir: Path
    records: List[Record] = field(default_factory=list)
    unreadable: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
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


def load_records(sweep_dir: Path) -> Tuple[List[Record], List[str]]:
    """All readable records under ``sweep_dir`` and a message for every unreadable one."""
    records, unreadable = [], []
    for path in sorted(Path(sweep_dir).rglob(RECORD_NAME)):
        try:
            records.append(read_record(path))
        except RecordError as exc:
            unreadable.append(str(exc))
    return records, unreadable


def _ordered(records: Sequence[Record]) -> List[Record]:
    """The old tool's order: models as first launched, then batch, then seq."""
    first_seen: Dict[str, float] = {}
    for r in records:
        index = math.inf if r.sweep_index is None else r.sweep_index
        first_seen[r.cell.model] = min(first_seen.get(r.cell.model, math.inf), index)

    def key(r: Record) -> tuple:
        cell = r.cell
        return (first_seen[cell.model], cell.model, cell.batch_size, cell.sequence_length)

    return sorted(records, key=key)


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


def collect(sweep_dir: Path, write: bool = True) -> Collection:
    """Read every record under ``sweep_dir``; render the report; write the CSV files."""
    sweep_dir = Path(sweep_dir)
    result = Collection(sweep_dir=sweep_dir)
    if not sweep_dir.is_dir():
        result.report = f"sweeper.collect: {sweep_dir} is not a folder; give a sweep folder"
        return result
    records, unreadable = load_records(sweep_dir)
    result.records = _ordered(records)
    result.unreadable = unreadable
    if not result.records:
        result.report = (
            f"sweeper.collect: no {RECORD_NAME} under {sweep_dir}"
            + (f" that could be read ({len(unreadable)} could not)" if unreadable else "")
            + "; run a sweep there first (python -m sweeper ... -m hydra.sweep.dir="
            + f"{sweep_dir})"
        )
        result.report += "".join(f"\nskipped unreadable record: {u}" for u in unreadable)
        return result

    groups: Dict[Tuple[str, str], List[Record]] = {}
    for record in result.records:
        groups.setdefault((record.cell.framework, record.cell.device), []).append(record)
    several = len(groups) > 1
    parts: List[str] = []
    csv_rows: Dict[str, List[Row]] = {}
    env_text = io.StringIO()
    for (framework, device), members in groups.items():
        if several:
            parts.append(f"\n######## framework={framework} device={device} ########")
        for mode, measurement, label, filename in SECTIONS:
            chosen = [r for r in members if r.wants(mode, measurement)]
            if not chosen:
                continue
            rows = []
            sources = [_memory_source(r, mode) if measurement == "memory" else None for r in chosen]
            marks, notes = memory_marks(sources)  # only when the figures' sources differ
            for record, source in zip(chosen, sources):
                value, noisy = _value(record, mode, measurement)
                cell = record.cell
                rows.append(
                    Row(
                        model=cell.model,
                        batch_size=cell.batch_size,
                        sequence_length=cell.sequence_length,
                        value=value,
                        noisy=noisy,
                        extra=(framework, device) if several else (),
                        mark=marks.get(source, ""),
                    )
                )
            header = TIME_HEADER if measurement == "time" else MEMORY_HEADER
            parts.append(render_section(label, header, rows, notes))
            csv_rows.setdefault(filename, []).extend(rows)
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
    parts.extend(f"\nskipped unreadable record: {u}" for u in unreadable)
    parts.append(_summary(result))
    result.report = "\n".join(parts)

    if write:
        files = {
            filename: results_csv(
                rows, filename.endswith("time.csv"), EXTRA_COLUMNS if several else ()
            )
            for filename, rows in csv_rows.items()
        }
        files["env.csv"] = env_text.getvalue()
        files["summary.csv"] = summary_csv(result.records, sweep_dir)
        for filename, text in files.items():
            write_text_atomic(sweep_dir / filename, text)
            result.written.append(sweep_dir / filename)
    return result


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
            f"{record.error} ({record.path.relative_to(result.sweep_dir)})"
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
    "error",
    "record",
)


def _number(value: Optional[float]) -> str:
    """A float rounded to 12 significant digits, written as Python writes the shortest float
    (``227.4``, not ``227.4000000000001``): no binary noise in the CSV."""
    return "" if value is None else repr(float(f"{value:.12g}"))


def summary_csv(records: Sequence[Record], root: Path) -> str:
    """One row per cell and mode with the main statistics: for plots and notebooks."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(SUMMARY_COLUMNS)
    for record in records:
        cell = record.cell
        for mode in record.modes:
            result = record.result(mode)
            timing = result.time if result else None
            memory = result.memory if result else None
            writer.writerow(
                [
                    cell.model,
                    cell.batch_size,
                    cell.sequence_length,
                    cell.framework,
                    cell.device,
                    mode.value,
                    (result.status if result and result.status else record.status).value,
                    _number(timing and timing.median_s),
                    _number(timing and timing.min_s),
                    _number(timing and timing.iqr_pct),
                    _number(timing and timing.ci95_halfwidth_pct),
                    timing.timed_calls if timing else "",
                    timing.noisy if timing else "",
                    _number(timing and timing.first_call_s),
                    _number(memory and memory.headline_mib),
                    _number(memory and memory.peak_increase_mib),
                    (result.error if result else record.error) or "",
                    str(record.path.relative_to(root)) if record.path else "",
                ]
            )
    return out.getvalue()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.collect",
        description="Print a sweep folder's tables and write its CSV files.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (hydra.sweep.dir)")
    parser.add_argument("--no-write", action="store_true", help="print only; write no CSV")
    args = parser.parse_args(argv)
    result = collect(args.sweep_dir, write=not args.no_write)
    print(result.report, file=sys.stdout if result.records else sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
