"""What tells the cells of a table apart beyond their coordinates, and labels that show it.

A row of the old tool's tables is a model label, a batch size and a sequence length. A sweep can
vary anything else too (``framework.use_xla=true,false``, ``seed=0,1``, ``timing.max_time_s``, a
model key under a fixed ``model.name``), and two such cells must not print as the same row. This
module finds, from the records' resolved configs, the keys that take more than one value:

- options (every key outside ``model``): varying across the records given, usually one table's
  (one framework and device, so that keys only one framework has do not count);
- model keys: varying among records with the same model label only (``bert-base`` and
  ``bert-384-hid`` differ in ``hidden_size`` by definition; their labels already say so).

Not counted: the coordinates (batch, seq, framework, device), and keys that do not change what a
cell measures (sweeper.config.job.NOT_PART_OF_IDENTITY: ``force``, ``timeout_s``). A key missing
from a record (an older sweeper, a hand-made record) counts as a value of its own. When nothing
varies, labels are the records' own and the old format is unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from ..config.job import NOT_PART_OF_IDENTITY
from ..record import Record

__all__ = [
    "COORDINATE_KEYS",
    "Variation",
    "flat_config",
    "comparable_values",
    "format_value",
    "group_key",
    "label_of",
    "option_columns",
    "ordered",
    "variations",
]

# Keys shown as the table's own coordinates (or its grouping), never as options.
COORDINATE_KEYS = ("batch", "seq", "framework.name", "device.name")
_MODEL = "model."
ABSENT = "n/a"  # how a key a record does not have is shown


def flat_config(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"timing": {"min_calls": 6}}`` -> ``{"timing.min_calls": 6}``, in the config's order."""
    flat: Dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def format_value(value: Any) -> str:
    """A config value as a user types it: ``true``, ``null``, ``384``, ``[1, 2]``."""
    if isinstance(value, (bool, type(None), list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def comparable_values(flat: Mapping[str, Any]) -> Dict[str, str]:
    """The keys of a flat config that can tell cells apart, as text: all but the coordinates
    and the keys that do not change what is measured."""
    return {
        key: format_value(value)
        for key, value in flat.items()
        if key not in COORDINATE_KEYS and key not in NOT_PART_OF_IDENTITY
    }


def _varying(values: Sequence[Mapping[str, str]], keys: Iterable[str]) -> List[str]:
    return [k for k in keys if len({v.get(k, ABSENT) for v in values}) > 1]


def _ordered_keys(values: Sequence[Mapping[str, str]]) -> List[str]:
    keys: Dict[str, None] = {}
    for value in values:
        keys.update(dict.fromkeys(value))
    return list(keys)


@dataclass(frozen=True)
class Variation:
    """The varying keys of a set of records, and how each record is labelled with them."""

    options: Tuple[str, ...] = ()  # dotted keys outside model, in config order
    model_keys: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # (label, its varying model keys)

    @classmethod
    def of(cls, records: Sequence[Record]) -> Variation:
        values = [comparable_values(flat_config(r.config)) for r in records]
        keys = _ordered_keys(values)
        options = _varying(values, [k for k in keys if not k.startswith(_MODEL)])
        by_label: Dict[str, List[Mapping[str, str]]] = {}
        for record, value in zip(records, values):
            by_label.setdefault(record.cell.model, []).append(value)
        model_keys = []
        for label, members in by_label.items():
            model = [k for k in _ordered_keys(members) if k.startswith(_MODEL)]
            varying = _varying(members, model)
            if varying:
                model_keys.append((label, tuple(varying)))
        return cls(options=tuple(options), model_keys=tuple(model_keys))

    @property
    def columns(self) -> Tuple[str, ...]:
        """Every varying key as a column name (dotted), options first."""
        model: Dict[str, None] = {}
        for _, keys in self.model_keys:
            model.update(dict.fromkeys(keys))
        return self.options + tuple(model)

    def values(self, record: Record) -> Dict[str, str]:
        """The record's value of every varying key (``n/a`` where it has none)."""
        flat = comparable_values(flat_config(record.config))
        return {key: flat.get(key, ABSENT) for key in self.columns}

    def raw_values(self, record: Record) -> Dict[str, Any]:
        """The record's value of every varying key as the config has it (None where absent)."""
        flat = flat_config(record.config)
        return {key: flat.get(key) for key in self.columns}

    def model_label(self, record: Record) -> str:
        """The record's model label, plus the model keys that vary under that label:
        ``tiny-bert[hidden_size=32]``, or ``bert-base[hidden_size=384,num_hidden_layers=6]``
        when the label had a bracket already."""
        label = record.cell.model
        keys = dict(self.model_keys).get(label, ())
        if not keys:
            return label
        flat = comparable_values(flat_config(record.config))
        bracketed = label.endswith("]") and "[" in label
        shown = label[label.rindex("[") + 1 : -1].split(",") if bracketed else []
        shown_keys = {part.partition("=")[0] for part in shown}
        parts = [
            f"{k[len(_MODEL) :]}={flat.get(k, ABSENT)}"
            for k in keys
            if k[len(_MODEL) :] not in shown_keys
        ]
        if not parts:
            return label
        if bracketed:
            return f"{label[:-1]},{','.join(parts)}]"
        return f"{label}[{','.join(parts)}]"

    def option_text(self, record: Record) -> str:
        """``use_xla=true seed=1``: the varying options, by their last name unless two share it."""
        flat = comparable_values(flat_config(record.config))
        last = [k.rsplit(".", 1)[-1] for k in self.options]
        names = [
            k if last.count(k.rsplit(".", 1)[-1]) > 1 else k.rsplit(".", 1)[-1]
            for k in self.options
        ]
        return " ".join(f"{n}={flat.get(k, ABSENT)}" for n, k in zip(names, self.options))

    def label(self, record: Record) -> str:
        """What a table row shows for the record: model label, then the varying options."""
        text = self.option_text(record)
        return f"{self.model_label(record)} {text}" if text else self.model_label(record)


def group_key(record: Record) -> Tuple[str, str]:
    """The table a record belongs to: one per framework and device."""
    return record.cell.framework, record.cell.device


def variations(records: Sequence[Record]) -> Dict[Tuple[str, str], Variation]:
    """One Variation per framework and device: keys only one framework has never count."""
    groups: Dict[Tuple[str, str], List[Record]] = {}
    for record in records:
        groups.setdefault(group_key(record), []).append(record)
    return {key: Variation.of(members) for key, members in groups.items()}


def option_columns(by_group: Mapping[Any, Variation]) -> Tuple[str, ...]:
    """Every group's varying keys, once each, in first-seen order: the CSV and frame columns."""
    columns: Dict[str, None] = {}
    for variation in by_group.values():
        columns.update(dict.fromkeys(variation.columns))
    return tuple(columns)


def label_of(record: Record, by_group: Mapping[Tuple[str, str], Variation]) -> str:
    """The row label of ``record`` among the records ``by_group`` was computed from."""
    return by_group[group_key(record)].label(record)


def ordered(
    records: Sequence[Record], by_group: Mapping[Tuple[str, str], Variation]
) -> List[Record]:
    """The old tool's order: labels as first launched (sweep index), then batch, then seq."""
    first_seen: Dict[str, float] = {}
    for record in records:
        index = float("inf") if record.sweep_index is None else record.sweep_index
        label = label_of(record, by_group)
        first_seen[label] = min(first_seen.get(label, float("inf")), index)

    def key(record: Record) -> tuple:
        label, cell = label_of(record, by_group), record.cell
        return (first_seen[label], label, cell.batch_size, cell.sequence_length)

    return sorted(records, key=key)
