"""Render cells as the old transformers benchmark utilities printed and saved them.

Formats, as transformers' ``benchmark_utils.py`` (4.x) printed them: a section title is an empty
line then
``20*"=" + LABEL.center(40) + 20*"="``; a table is 80 dashes, a header of centred columns
(30, 15, 15, 15), 80 dashes, one row per cell (the same columns, with the old tool's single
space before the last two), 80 dashes. Time cells are seconds rounded to
3 decimals (``< 0.001`` below that), memory cells whole MB (MiB), ``N/A`` where there is no value.
Additions: a time whose measurement is noisy carries a ``*`` right after the number, explained
under the table; labels the 30-character column would cut to the same text are shortened in the
middle with a tag instead, and spelled out under the table. Standard library only.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence

from ..measure.stats import NOISY_IQR_PCT

__all__ = [
    "NOISY_MARK",
    "SEED_KEYS",
    "Row",
    "env_csv",
    "fit_labels",
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
# The old tool's model column: 30 characters; longer labels were cut.
LABEL_WIDTH = 30
# A label shortened to stay unique: its start, a tag from a hash of the whole label, its end.
_TAG_CHARS, _TAIL_CHARS = 4, 10
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


def _shortened(label: str, width: int) -> str:
    """``bert-base[hidd~3f2a~_layers=6]``: start ~ tag ~ end, exactly ``width`` characters."""
    tag = hashlib.sha256(label.encode()).hexdigest()[:_TAG_CHARS]
    head = width - _TAG_CHARS - _TAIL_CHARS - 2
    return f"{label[:head]}~{tag}~{label[-_TAIL_CHARS:]}"


def fit_labels(labels: Iterable[str], width: int = LABEL_WIDTH) -> Dict[str, str]:
    """What the model column shows for each label: the label cut at ``width`` as the old tool
    did, unless two different labels would then look alike; those are shortened in the middle
    with a tag from a hash of the whole label (stable across runs and tables)."""
    by_cut: Dict[str, set] = {}
    for label in labels:
        by_cut.setdefault(label[:width], set()).add(label)
    shown = {}
    for cut, group in by_cut.items():
        for label in group:
            unique = len(group) == 1 or len(label) <= width
            shown[label] = cut if unique else _shortened(label, width)
    return shown


def render_section(label: str, header: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """One titled table, exactly as the old tool printed it; ``notes`` explain row marks."""
    is_time = header == TIME_HEADER
    shown = fit_labels(row.model for row in rows)
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
            shown[row.model].center(LABEL_WIDTH)
            + str(row.batch_size).center(15)
            + " "
            + str(row.sequence_length).center(15)
            + " "
            + value.center(15)
        )
    lines.append(80 * "-")
    if is_time and any(r.noisy and r.value is not None for r in rows):
        lines.append(NOISY_NOTE)
    shortened = dict.fromkeys(r.model for r in rows if shown[r.model] != r.model[:LABEL_WIDTH])
    lines += [f"{shown[full]} = {full}" for full in shortened]
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
