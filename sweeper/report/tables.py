"""Render cells as the old transformers benchmark utilities printed and saved them.

Formats, as transformers' ``benchmark_utils.py`` (4.x) printed them: a section title is an empty
line then
``20*"=" + LABEL.center(40) + 20*"="``; a table is 80 dashes, a header of centred columns
(30, 15, 15, 15), 80 dashes, one row per cell (the same columns, with the old tool's single
space before the last two), 80 dashes. Time cells are seconds rounded to
3 decimals (``< 0.001`` below that), memory cells whole MB (MiB), ``N/A`` where there is no value.
One addition: a time whose measurement is noisy carries a ``*`` right after the number, explained
under the table. Standard library only.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from ..measure.stats import NOISY_IQR_PCT

__all__ = [
    "NOISY_MARK",
    "SEED_KEYS",
    "Row",
    "env_csv",
    "format_memory",
    "format_time",
    "render_env",
    "render_section",
    "results_csv",
    "title",
]

# The order of the old tool's block; printed first, in this order.
SEED_KEYS = (
    "transformers_version",
    "framework",
    "use_torchscript",
    "eager_mode",
    "use_xla",
    "framework_version",
    "python_version",
    "system",
    "cpu",
    "architecture",
    "date",
    "time",
    "fp16",
    "use_multiprocessing",
    "only_pretrain_model",
    "cpu_ram_mb",
    "use_gpu",
    "num_gpus",
    "gpu",
    "gpu_ram_mb",
    "gpu_power_watts",
    "gpu_performance_state",
    "use_tpu",
)

NOISY_MARK = "*"
NOISY_NOTE = (
    f"{NOISY_MARK} noisy: IQR/median > {NOISY_IQR_PCT:g} % or the median's 95 % CI too wide; "
    "see time.noise"
)
TIME_HEADER = "Time in s"
MEMORY_HEADER = "Memory in MB"


@dataclass(frozen=True)
class Row:
    model: str
    batch_size: int
    sequence_length: int
    value: Optional[float]  # seconds or MiB; None = N/A
    noisy: bool = False
    extra: Sequence[str] = ()  # framework, device: only when a sweep spans several
    mark: str = ""  # memory: its source, when a table's figures come from several (record.py)


def title(label: str) -> str:
    return "\n" + 20 * "=" + label.center(40) + 20 * "="


def format_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "N/A"
    rounded = round(1000 * seconds) / 1000
    return "< 0.001" if rounded == 0.0 else str(rounded)


def format_memory(mib: Optional[float]) -> str:
    return "N/A" if mib is None else str(int(mib))


def render_section(label: str, header: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """One titled table, exactly as the old tool printed it; ``notes`` explain row marks."""
    is_time = header == TIME_HEADER
    lines = [title(label), 80 * "-"]
    lines.append(
        "Model Name".center(30)
        + "Batch Size".center(15)
        + "Seq Length".center(15)
        + header.center(15)
    )
    lines.append(80 * "-")
    for row in rows:
        value = format_time(row.value) if is_time else format_memory(row.value)
        if is_time and row.noisy and row.value is not None:
            value += NOISY_MARK
        if row.value is not None:
            value += row.mark
        # The old tool printed rows with print(a, b, c): one space between its last three
        # parts. The seed's tables show those spaces; we keep them, byte for byte.
        lines.append(
            row.model[:30].center(30)
            + str(row.batch_size).center(15)
            + " "
            + str(row.sequence_length).center(15)
            + " "
            + value.center(15)
        )
    lines.append(80 * "-")
    if is_time and any(r.noisy and r.value is not None for r in rows):
        lines.append(NOISY_NOTE)
    lines.extend(notes)
    return "\n".join(lines)


def render_env(items: Iterable[tuple]) -> str:
    lines = [title("ENVIRONMENT INFORMATION"), ""]
    lines += [f"- {key}: {value}" for key, value in items]
    return "\n".join(lines)


def results_csv(rows: Sequence[Row], is_time: bool, extra_columns: Sequence[str] = ()) -> str:
    """The old tool's CSV (``model,batch_size,sequence_length,result``), extra columns after."""
    out = io.StringIO()
    writer = csv.writer(out)  # csv's default \r\n line ends, as the old tool's files had
    writer.writerow(["model", "batch_size", "sequence_length", "result", *extra_columns])
    for row in rows:
        if row.value is None:
            value = "N/A"
        elif is_time:
            value = f"{row.value:.4f}"
        else:
            value = str(int(row.value))
        writer.writerow([row.model, row.batch_size, row.sequence_length, value, *row.extra])
    return out.getvalue()


def env_csv(items: Iterable[tuple], extra: Sequence[str] = ()) -> str:
    """The old tool's env CSV: one ``key,value`` row per key, no header; when a sweep spans
    several frameworks or devices, each row also carries them (``key,value,framework,device``)."""
    out = io.StringIO()
    writer = csv.writer(out)
    for key, value in items:
        writer.writerow([key, value, *extra])
    return out.getvalue()
