"""A sweep's records as a tidy pandas DataFrame: one row per cell and mode.

``sweeper.load(SWEEP_DIR)`` returns it; ``summary.csv`` is written from it. Columns: the cell's
coordinates (``model`` is the label with any model keys that vary under it, ``label`` what the
tables print: that plus the varying options), one column per varying option (dotted config keys:
``framework.use_xla``, with the config's values), then ``mode``, ``status`` and the statistics
(seconds, MiB, percent, as the record has them), ``error`` and ``record`` (the file's path).
``samples=True`` adds ``samples_s``, each row's raw timed calls as a tuple.
The frame's ``attrs`` say what was left out (``left_out``: paths and reasons), how many cells of
the latest run have no record yet (``missing_cells`` of ``total_cells``) and the resume command.
pandas is imported here, not by the collector's modules that only print tables.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pandas as pd

from ..record import Cell, Record
from .select import Selection, select
from .variation import label_of, option_columns, ordered, variations

__all__ = ["FRAME_COLUMNS", "load", "other_axis", "records_frame", "selection_frame", "x_axis"]

# The columns after the coordinates and options, in order.
FRAME_COLUMNS = (
    "mode",
    "status",
    "median_s",
    "ci95_low_s",
    "ci95_high_s",
    "ci95_halfwidth_pct",
    "iqr_s",
    "iqr_pct",
    "min_s",
    "mean_s",
    "timed_calls",
    "noisy",
    "noise_reasons",
    "first_call_s",
    "peak_mib",
    "peak_increase_mib",
    "peak_increase_anon_mib",
    "gpu_peak_increase_mib",
    "baseline_mib",
    "memory_source",
    "error",
    "label",
    "record",
)
COORDINATES = tuple(f.name for f in fields(Cell))  # model, framework, device, batch, seq
_FLOATS = (
    "median_s",
    "ci95_low_s",
    "ci95_high_s",
    "ci95_halfwidth_pct",
    "iqr_s",
    "iqr_pct",
    "min_s",
    "mean_s",
    "first_call_s",
    "peak_mib",
    "peak_increase_mib",
    "peak_increase_anon_mib",
    "gpu_peak_increase_mib",
    "baseline_mib",
)


def x_axis(frame: pd.DataFrame) -> str:
    """The axis reports put cells along: ``sequence_length``, or ``batch_size`` when the sweep
    has more batch sizes than sequence lengths."""
    if frame["batch_size"].nunique() > frame["sequence_length"].nunique():
        return "batch_size"
    return "sequence_length"


def other_axis(axis: str) -> str:
    return "batch_size" if axis == "sequence_length" else "sequence_length"


def _rows(record: Record, label: str, model: str, options: Dict[str, str], samples: bool):
    cell = record.cell
    for mode in record.modes:
        result = record.result(mode)
        # What the worker measured, also for a mode that failed later (the status says so).
        timing = result.time if result is not None else None
        memory = result.memory if result is not None else None
        status = result.status if result is not None and result.status else record.status
        row: Dict[str, Any] = {
            "model": model,
            "framework": cell.framework,
            "device": cell.device,
            "batch_size": cell.batch_size,
            "sequence_length": cell.sequence_length,
            **options,
            "mode": mode.value,
            "status": status.value,
            "median_s": timing.median_s if timing else None,
            "ci95_low_s": timing.ci95_low_s if timing else None,
            "ci95_high_s": timing.ci95_high_s if timing else None,
            "ci95_halfwidth_pct": timing.ci95_halfwidth_pct if timing else None,
            "iqr_s": timing.iqr_s if timing else None,
            "iqr_pct": timing.iqr_pct if timing else None,
            "min_s": timing.min_s if timing else None,
            "mean_s": timing.mean_s if timing else None,
            "timed_calls": timing.timed_calls if timing else None,
            "noisy": timing.noisy if timing else None,
            "noise_reasons": "; ".join(timing.noise.reasons) if timing else None,
            "first_call_s": timing.first_call_s if timing else None,
            "peak_mib": memory.headline_mib if memory else None,
            "peak_increase_mib": memory.peak_increase_mib if memory else None,
            "peak_increase_anon_mib": memory.peak_increase_anon_mib if memory else None,
            "gpu_peak_increase_mib": memory.gpu_peak_increase_mib if memory else None,
            "baseline_mib": memory.baseline_rss_mib if memory else None,
            "memory_source": memory.headline_source if memory else None,
            "error": result.error if result is not None else record.error,
            "label": label,
            "record": str(record.path) if record.path else None,
        }
        if samples:
            row["samples_s"] = tuple(timing.samples_s) if timing else None
        yield row


def records_frame(records: Sequence[Record], samples: bool = False) -> pd.DataFrame:
    """The tidy frame of ``records`` (shown in the old tool's order)."""
    by_group = variations(records)
    columns = option_columns(by_group)
    rows: List[Dict[str, Any]] = []
    for record in ordered(records, by_group):
        variation = by_group[(record.cell.framework, record.cell.device)]
        values = variation.raw_values(record)
        options = {key: values.get(key) for key in columns}
        rows.extend(
            _rows(
                record, label_of(record, by_group), variation.model_label(record), options, samples
            )
        )
    names = [*COORDINATES, *columns, *FRAME_COLUMNS] + (["samples_s"] if samples else [])
    frame = pd.DataFrame(rows, columns=names)
    for name in columns:  # the config's own values: no int turned float by a missing one
        frame[name] = pd.Series([row[name] for row in rows], dtype=object, index=frame.index)
    for name in _FLOATS:
        frame[name] = frame[name].astype("float64")
    frame["timed_calls"] = frame["timed_calls"].astype("Int64")
    frame["noisy"] = frame["noisy"].astype("boolean")
    frame["batch_size"] = frame["batch_size"].astype("int64")
    frame["sequence_length"] = frame["sequence_length"].astype("int64")
    frame.attrs["option_columns"] = list(columns)
    return frame


def selection_frame(selection: Selection, samples: bool = False) -> pd.DataFrame:
    """:func:`records_frame` of a selection, with what was left out and missing in ``attrs``."""
    frame = records_frame(selection.records, samples=samples)
    frame.attrs.update(
        sweep_dir=str(selection.sweep_dir),
        left_out=[(str(item.record.path), item.reason) for item in selection.left_out],
        unreadable=list(selection.unreadable),
        missing_cells=selection.missing_count,
        total_cells=selection.total_cells,
        resume_command=selection.manifest.command if selection.manifest else None,
    )
    return frame


def load(sweep_dir: Path, samples: bool = False, all_records: bool = False) -> pd.DataFrame:
    """The records of a sweep folder as a tidy frame (see the module docstring).

    ``all_records=True`` ignores the folder's manifest and shows every record (the newest of
    each cell and config). Raises FileNotFoundError for a path that is not a folder.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a folder; give a sweep folder")
    return selection_frame(select(sweep_dir, use_manifest=not all_records), samples=samples)
