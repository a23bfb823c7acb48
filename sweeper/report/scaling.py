"""How cost grows: power-law fits of time and memory against sequence length (or batch size).

For each line of a sweep (model label, framework, device, the other axis, options, mode) with
three or more successful cells: a least-squares fit of log(median time) against log(x), whose
slope is the exponent (time ∝ x^k) and whose R² says how well one power law describes the points;
the same for the peak memory increase over the built model (its anonymous part: the activations;
the absolute peak is mostly weights and barely grows), and a straight-line fit of the absolute
peak against tokens (batch × sequence length) for the MB each token adds. A fit with R² below
``POOR_FIT_R2`` is reported as poor: the points follow no single power law (fixed overhead
dominating short inputs, then attention's quadratic term taking over), so its exponent is only
an average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from .frame import other_axis, x_axis

__all__ = ["MIN_POINTS", "POOR_FIT_R2", "Fit", "fit_power", "scaling", "scaling_lines"]

# Below this, a power law explains less than 95 % of the variance of the log cost: the exponent
# then describes no single regime. A convention of ours (no standard threshold exists).
POOR_FIT_R2 = 0.95
# Two points always fit a line exactly (R² = 1): a fit means something from three on.
MIN_POINTS = 3
_AXIS_NAMES = {"sequence_length": "seq", "batch_size": "batch"}


@dataclass(frozen=True)
class Fit:
    """y ≈ c · x^exponent (or y ≈ c + slope · x for a linear fit), over ``points`` points."""

    slope: float  # the exponent of a power fit, the slope of a linear one
    intercept: float
    r2: float
    points: int
    x_min: float
    x_max: float

    @property
    def poor(self) -> bool:
        return self.r2 < POOR_FIT_R2


def _fit(x: np.ndarray, y: np.ndarray, log: bool) -> Optional[Fit]:
    keep = np.isfinite(x) & np.isfinite(y)
    if log:
        keep &= (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < MIN_POINTS:
        return None
    fx, fy = (np.log(x), np.log(y)) if log else (x, y)
    if np.ptp(fy) == 0:  # a flat line: slope 0 fits exactly, R² is undefined; call it 1
        return Fit(0.0, float(fy[0]), 1.0, len(x), float(x.min()), float(x.max()))
    slope, intercept = np.polyfit(fx, fy, 1)
    r2 = 1.0 - np.sum((fy - (slope * fx + intercept)) ** 2) / np.sum((fy - fy.mean()) ** 2)
    return Fit(
        slope=float(slope),
        intercept=float(intercept),
        r2=float(r2),
        points=len(x),
        x_min=float(x.min()),
        x_max=float(x.max()),
    )


def fit_power(x: Sequence[float], y: Sequence[float]) -> Optional[Fit]:
    """Least squares in log-log: the exponent of y against x; None with too few points."""
    return _fit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), log=True)


def _line_columns(frame: pd.DataFrame, axis: str) -> List[str]:
    other = other_axis(axis)
    options = [c for c in frame.attrs.get("option_columns", []) if not c.startswith("model.")]
    return ["label", "model", "framework", "device", other, *options, "mode"]


def _memory_increase(done: pd.DataFrame) -> pd.Series:
    """What the calls added at their peak, in the memory the line's tables show. On a GPU: the
    tensors the allocator held beyond those at the start (``gpu_peak_increase_mib``; none in
    records from before it was added: no fit). On the CPU: the anonymous part where every cell
    of the line has it (library code mapped by the first calls left out, a constant that would
    flatten the exponent of small inputs), else the whole resident increase (older records)."""
    if (done["memory_source"].fillna("peak_rss") != "peak_rss").any():
        return done["gpu_peak_increase_mib"]
    anon = done["peak_increase_anon_mib"]
    return anon if anon.notna().all() else done["peak_increase_mib"]


def scaling(frame: pd.DataFrame, axis: Optional[str] = None) -> pd.DataFrame:
    """One row per line of the sweep: the fits of time and memory against ``axis``.

    ``axis``: ``sequence_length`` (default) or ``batch_size``; by default the one with more
    values. Columns: the line's keys, ``axis``, ``x_min``, ``x_max``, ``time_exponent``,
    ``time_r2``, ``time_points``, ``memory_exponent`` and ``memory_r2`` (of the peak increase),
    ``mib_per_token`` and ``mib_per_token_r2`` (linear, absolute peak), ``poor_fit`` and ``text``.
    Lines with fewer than three successful cells get no fit (NaN) and say so in ``text``.
    """
    axis = axis or x_axis(frame)
    keys = _line_columns(frame, axis)
    rows = []
    for key, line in frame.groupby(keys, dropna=False, sort=False):
        done = line[line["status"] == "ok"]
        x = done[axis].to_numpy(dtype=float)
        time = fit_power(x, done["median_s"].to_numpy(dtype=float))
        memory = fit_power(x, _memory_increase(done).to_numpy(dtype=float))
        tokens = (done["batch_size"] * done["sequence_length"]).to_numpy(dtype=float)
        per_token = _fit(tokens, done["peak_mib"].to_numpy(dtype=float), log=False)
        row = dict(zip(keys, key))
        row.update(
            axis=axis,
            x_min=_first(time, memory, "x_min"),
            x_max=_first(time, memory, "x_max"),
            time_exponent=time.slope if time else math.nan,
            time_r2=time.r2 if time else math.nan,
            time_points=time.points if time else len(np.unique(x)),
            memory_exponent=memory.slope if memory else math.nan,
            memory_r2=memory.r2 if memory else math.nan,
            mib_per_token=per_token.slope if per_token else math.nan,
            mib_per_token_r2=per_token.r2 if per_token else math.nan,
            poor_fit=bool((time and time.poor) or (memory and memory.poor)),
        )
        row["text"] = _text(row, time, memory, per_token, axis)
        rows.append(row)
    return pd.DataFrame(rows)


def _first(time: Optional[Fit], memory: Optional[Fit], name: str) -> float:
    fit = time or memory
    return getattr(fit, name) if fit else math.nan


def _r2(fit: Fit) -> str:
    quality = f"R² {fit.r2:.2f}"
    return f"{quality}: poor fit, no single power law" if fit.poor else quality


def _text(row, time, memory, per_token, axis) -> str:
    """``bert-base pt cpu b8 inference: time ∝ seq^1.05 (8→512, R² 0.99); ...``"""
    other = other_axis(axis)
    name = _AXIS_NAMES[axis]
    line = (
        f"{row['label']} {row['framework']} {row['device']} "
        f"{_AXIS_NAMES[other][0]}{row[other]} {row['mode']}"
    )
    if time is None and memory is None:
        return f"{line}: too few successful points for a fit (needs {MIN_POINTS} {name} values)"
    parts = []
    if time is not None:
        parts.append(f"time ∝ {name}^{time.slope:.2f} ({time.x_min:g}→{time.x_max:g}, {_r2(time)})")
    if memory is not None:
        parts.append(f"memory increase ∝ {name}^{memory.slope:.2f} ({_r2(memory)})")
    if per_token is not None:
        parts.append(f"memory {per_token.slope:+.3g} MB per token (R² {per_token.r2:.2f})")
    return f"{line}: " + "; ".join(parts)


def scaling_lines(frame: pd.DataFrame) -> List[str]:
    """The fits as sentences, one per line of the sweep (for under the tables)."""
    if frame.empty:
        return []
    return list(scaling(frame)["text"])
