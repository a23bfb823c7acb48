"""One line per finished cell while a sweep runs: where it stands, what the cell gave, how long.

``[3/16] bert-base pt cpu b8 s128: ok 0.885 s ±1.8 %, 781 MB (12.3 s; ETA 2 min)``

The index counts finished cells of this run, the total is the run's from its manifest
(sweeper/manifest.py). The ETA is the mean wall time of the cells measured so far (cells kept from
an earlier run cost nothing and do not count) times the cells left. Printed by the end-of-run
callback (sweeper.engine.callbacks) in the Hydra process. Plain lines when the output is not a
terminal (CI logs); on a terminal the status word is coloured unless ``NO_COLOR`` is set.
Standard library only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import IO, Dict, List, Optional, Sequence

from ..manifest import ManifestJob
from ..record import Record, Status

__all__ = ["Progress", "cell_text", "duration_text", "record_text", "varying_overrides"]

# The override keys that are a cell's coordinates: the line names the cell by them already.
_COORDINATE_OVERRIDES = ("model", "model.name", "framework", "device", "batch", "seq")
# An error is cut to this many characters: the line stays a line; the record has all of it.
_ERROR_CHARS = 100
_COLOURS = {Status.ok: "32", Status.skipped: "33"}  # green, yellow; failures red (31)


def duration_text(seconds: float) -> str:
    """``45 s``, ``3 min``, ``1 h 20 min``: the precision an ETA has."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _significant(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if value < 10**digits else f"{value:.0f}"


def varying_overrides(jobs: Sequence[ManifestJob]) -> List[str]:
    """Override keys with more than one value across ``jobs``, coordinates excepted: what tells
    two cells with the same coordinates apart (``framework.use_xla``)."""
    values: Dict[str, set] = {}
    for job in jobs:
        seen = dict(o.lstrip("+~").partition("=")[::2] for o in job.overrides)
        for key in set(values) | set(seen):
            values.setdefault(key, set()).add(seen.get(key))
    return [k for k, v in values.items() if len(v) > 1 and k not in _COORDINATE_OVERRIDES]


def cell_text(record: Record, overrides: Sequence[str] = (), keys: Sequence[str] = ()) -> str:
    """``bert-base pt cpu b8 s128``, plus ``key=value`` of each varying override key."""
    cell = record.cell
    text = f"{cell.model} {cell.framework} {cell.device} b{cell.batch_size} s{cell.sequence_length}"
    chosen = dict(o.lstrip("+~").partition("=")[::2] for o in overrides)
    extra = [f"{k}={chosen[k]}" for k in keys if k in chosen]
    return " ".join([text, *extra])


def record_text(record: Record) -> str:
    """``ok 0.885 s ±1.8 %, 781 MB`` (per mode when several), or the status and the error."""
    if record.status is not Status.ok:
        error = (record.error or "").splitlines()[0] if record.error else ""
        if len(error) > _ERROR_CHARS:
            error = error[: _ERROR_CHARS - 3] + "..."
        return f"{record.status.value}: {error}" if error else record.status.value
    parts = []
    for mode in record.modes:
        timing, memory = record.time(mode), record.memory(mode)
        bits = []
        if timing is not None:
            spread = (
                f" ±{timing.ci95_halfwidth_pct:.1f} %"
                if timing.ci95_halfwidth_pct is not None
                else ""
            )
            bits.append(f"{_significant(timing.median_s)} s{'*' if timing.noisy else ''}{spread}")
        if memory is not None and memory.headline_mib is not None:
            bits.append(f"{memory.headline_mib:.0f} MB")
        text = ", ".join(bits)
        parts.append(f"{mode.value} {text}" if len(record.modes) > 1 else text)
    return "ok " + "; ".join(p for p in parts if p)


@dataclass
class Progress:
    """The state of one run's progress lines: how many cells are done and how long they took."""

    total: int
    stream: Optional[IO[str]] = None
    done: int = 0
    measured_s: List[float] = field(default_factory=list)

    def _colour(self, status: Status, text: str) -> str:
        stream = self.stream
        if stream is None or not stream.isatty() or os.environ.get("NO_COLOR"):
            return text
        return f"\033[{_COLOURS.get(status, '31')}m{text}\033[0m"

    def line(self, record: Record, wall_s: float, kept: bool, cell: str) -> str:
        """The line for a finished cell; counts it."""
        self.done += 1
        if not kept:
            self.measured_s.append(wall_s)
        left = max(self.total - self.done, 0)
        timing = "kept from an earlier run" if kept else f"{wall_s:.1f} s"
        if left and self.measured_s:
            eta = sum(self.measured_s) / len(self.measured_s) * left
            timing += f"; ETA {duration_text(eta)}"
        # A kept record was reported when it was measured: its status, not its error again.
        result = record.status.value if kept else record_text(record)
        status, _, rest = result.partition(" ")
        result = self._colour(record.status, status) + (f" {rest}" if rest else "")
        return f"[{self.done}/{self.total}] {cell}: {result} ({timing})"

    def emit(self, record: Record, wall_s: float, kept: bool, cell: str) -> None:
        text = self.line(record, wall_s, kept, cell)
        if self.stream is not None:
            print(text, file=self.stream, flush=True)
