"""Figures of a sweep: time and peak memory against sequence length (or batch size), log-log.

``python -m sweeper.plot SWEEP_DIR`` draws them from the records; the end of every multirun
draws them too, when some line has ``MIN_POINTS_TO_PLOT`` points or more. One figure per mode
and measurement (``plots/inference_time.png`` and ``.pdf``, ``inference_memory``,
``training_time``, ...), one panel per model label, one line per batch size (or sequence
length), framework, device and option set. The x axis is the sequence length, or the batch
size when the sweep has more batch sizes than sequence lengths. Times are medians with their
95 % CI as error bars; a noisy median gets an open marker. A cell that did not succeed is a gap
in its line, never a zero.

Drawn with matplotlib's object API on the Agg canvas: no pyplot, no global backend switch, so a
notebook's own plotting is untouched, and nothing here runs unless a figure is asked for (the
collector does not import this module).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..record import Record
from .frame import load, other_axis, records_frame, x_axis

__all__ = [
    "MIN_POINTS_TO_PLOT",
    "PLOTS_DIR",
    "figures",
    "main",
    "plottable",
    "save_figures",
    "write_plots",
]

PLOTS_DIR = "plots"
FORMATS = ("png", "pdf")
# Small enough to commit and to attach to a pull request; sharp enough to read on a screen.
_DPI = 100
_PANEL_IN = (4.5, 3.4)  # width, height of one panel in inches
_MAX_COLUMNS = 3
# Two points draw a segment the tables already show; from three on a figure shows a trend. Below
# this the end of a sweep draws nothing (and spends no second of matplotlib on it).
MIN_POINTS_TO_PLOT = 3
_AXIS_LABELS = {"sequence_length": "sequence length (tokens)", "batch_size": "batch size"}
_MEASUREMENTS = (
    ("time", "median_s", "time per call"),
    ("memory", "peak_mib", "peak memory (MB)"),
)
# Times are drawn in ms when every median is below one second.
_MS_BELOW_S = 1.0


def _line_columns(frame: pd.DataFrame, x: str) -> List[str]:
    """What tells the lines of a panel apart: the other axis, framework, device, options."""
    columns = [other_axis(x), "framework", "device", *frame.attrs.get("option_columns", [])]
    return [c for c in columns if c in frame.columns and not c.startswith("model.")]


def _line_label(key: Tuple, columns: Sequence[str], frame: pd.DataFrame) -> str:
    short = {"batch_size": "b", "sequence_length": "s"}
    parts = []
    for column, value in zip(columns, key):
        if column in short:
            parts.append(f"{short[column]}{value}")
        elif frame[column].nunique(dropna=False) > 1:
            parts.append(str(value) if column in ("framework", "device") else f"{column}={value}")
    return " ".join(parts)


def plottable(frame: pd.DataFrame) -> bool:
    """Whether any line has MIN_POINTS_TO_PLOT points or more."""
    if frame.empty:
        return False
    x = x_axis(frame)
    keys = ["model", "mode", *_line_columns(frame, x)]
    return bool((frame.groupby(keys, dropna=False)[x].nunique() >= MIN_POINTS_TO_PLOT).any())


def figures(frame: pd.DataFrame) -> Dict[str, Figure]:
    """``{"inference_time": Figure, ...}``: one figure per mode and measurement with a value.

    Each line is an ErrorbarContainer in its panel's ``containers`` (tests count them); its y
    data holds NaN where the cell did not succeed.
    """
    out: Dict[str, Figure] = {}
    if frame.empty:
        return out
    x = x_axis(frame)
    line_columns = _line_columns(frame, x)
    for mode in frame["mode"].unique():
        rows = frame[frame["mode"] == mode]
        for name, column, y_label in _MEASUREMENTS:
            if rows[column].notna().sum() == 0:
                continue
            out[f"{mode}_{name}"] = _figure(rows, x, column, y_label, line_columns, mode, name)
    return out


def _figure(rows, x, column, y_label, line_columns, mode, name) -> Figure:
    models = list(dict.fromkeys(rows["model"]))
    columns = min(len(models), _MAX_COLUMNS)
    lines = math.ceil(len(models) / columns)
    figure = Figure(figsize=(_PANEL_IN[0] * columns, _PANEL_IN[1] * lines), dpi=_DPI)
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    what = "median time per call, 95 % CI" if name == "time" else "peak memory"
    figure.suptitle(f"{mode}: {what}")
    scale = 1.0
    if name == "time":
        ms = rows.loc[rows["status"] == "ok", column].max() < _MS_BELOW_S
        scale, y_label = (1000.0, f"{y_label} (ms)") if ms else (1.0, f"{y_label} (s)")
    for ax, model in zip(axes, models):
        cells = rows[rows["model"] == model]
        any_noisy = False
        for key, line in cells.groupby(line_columns, dropna=False, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            line = line.sort_values(x)
            ok = line["status"] == "ok"
            y = line[column].where(ok) * scale
            yerr = None
            if name == "time":
                low = (y - line["ci95_low_s"].where(ok) * scale).clip(lower=0)
                high = (line["ci95_high_s"].where(ok) * scale - y).clip(lower=0)
                yerr = [low.fillna(0).to_numpy(), high.fillna(0).to_numpy()]
            container = ax.errorbar(
                line[x].to_numpy(),
                y.to_numpy(dtype=float),
                yerr=yerr,
                marker="o",
                markersize=4,
                capsize=2,
                label=_line_label(key, line_columns, rows),
            )
            noisy = line["noisy"].fillna(False).astype(bool) & ok
            if name == "time" and noisy.any():
                any_noisy = True
                ax.scatter(  # explicit colours: the next line keeps its own colour
                    line[x][noisy].to_numpy(),
                    y[noisy].to_numpy(dtype=float),
                    s=64,
                    facecolors="none",
                    edgecolors=container.lines[0].get_color(),
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(cells[x].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(model, fontsize=10)
        ax.set_xlabel(_AXIS_LABELS[x])
        ax.set_ylabel(y_label)
        ax.grid(True, which="major", alpha=0.3)
        title = "open marker: noisy" if any_noisy else None
        ax.legend(fontsize=7, title=title, title_fontsize=7)
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    figure.tight_layout()
    return figure


def write_plots(
    sweep_dir: Path,
    records: Optional[Sequence[Record]] = None,
    out_dir: Optional[Path] = None,
    force: bool = False,
) -> List[Path]:
    """Draw the figures of a sweep and save each as PNG and PDF under ``SWEEP_DIR/plots``.

    ``records``: the records to draw (the collector's selection); default: the folder's latest
    run. Nothing is drawn when no line has MIN_POINTS_TO_PLOT points, unless ``force``.
    Returns the files.
    """
    frame = load(sweep_dir) if records is None else records_frame(records)
    if not force and not plottable(frame):
        return []
    return save_figures(frame, Path(out_dir) if out_dir else Path(sweep_dir) / PLOTS_DIR)


def save_figures(frame: pd.DataFrame, out_dir: Path) -> List[Path]:
    """Every figure of ``frame`` as ``out_dir/NAME.png`` and ``.pdf``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures(frame).items():
        for fmt in FORMATS:
            path = out_dir / f"{name}.{fmt}"
            # No creation date or software version: the same records redraw the same files.
            metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
            figure.savefig(path, format=fmt, metadata=metadata)
            written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.plot",
        description="Draw a sweep's figures (PNG and PDF) from its records.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (hydra.sweep.dir)")
    parser.add_argument("--out", type=Path, help=f"where to write (default SWEEP_DIR/{PLOTS_DIR})")
    parser.add_argument(
        "--all", action="store_true", help="every record, not only the latest run's"
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"sweeper.plot: {args.sweep_dir} is not a folder; give a sweep folder", file=sys.stderr
        )
        return 2
    frame = load(args.sweep_dir, all_records=args.all)
    if frame.empty:
        print(f"sweeper.plot: no records to draw under {args.sweep_dir}", file=sys.stderr)
        return 2
    for path in save_figures(frame, args.out or args.sweep_dir / PLOTS_DIR):
        print(path)
    if frame[x_axis(frame)].nunique() < 2:
        print("(every line has a single point: sweep seq or batch over several values)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
