"""What transformers knows about each model type, read without a framework: the config class, its
keys and aliases, and the head classes each framework has.

The Hydra process checks model keys against the real config class before any job runs; the
worker picks the class to build from the same tables; ``python -m sweeper --info models`` prints
them. Only transformers' configuration modules and the name-only tables of its auto classes
(``models/auto/modeling_auto.py`` and ``modeling_tf_auto.py``: class *names* per model type) are
imported, a fraction of a framework import. When this module is the first to import transformers
(the Hydra process), USE_TF=0 and USE_TORCH=0 are set for that import, so transformers looks for
no framework, and TRANSFORMERS_NO_ADVISORY_WARNINGS=1 keeps its "None of PyTorch, TensorFlow >=
2.0, or Flax have been found" advice off the console; the variables are put back afterwards, so
the workers get their own settings. In a worker, transformers is already imported with its
framework and nothing is changed.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = [
    "BASE_TABLE",
    "FRAMEWORKS",
    "TRAINING_TABLES",
    "ConfigKeys",
    "Labels",
    "base_class",
    "catalogue",
    "catalogue_text",
    "class_module",
    "close_model_types",
    "config_class",
    "config_keys",
    "derived_from",
    "framework_class_name",
    "head_classes",
    "labels_of",
    "model_types",
    "owners",
    "positions_after_padding",
    "sub_config_class",
    "training_class",
    "transformers_module",
]

# Set while transformers is first imported by this module (see the module docstring).
_QUIET_IMPORT_ENV = {"USE_TF": "0", "USE_TORCH": "0", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}

FRAMEWORKS = {"pt": "PyTorch", "tf": "TensorFlow"}
_TABLE_MODULES = {
    "pt": "transformers.models.auto.modeling_auto",
    "tf": "transformers.models.auto.modeling_tf_auto",
}
_TABLE_PREFIX = {"pt": "", "tf": "TF_"}  # TF_MODEL_MAPPING_NAMES is MODEL_MAPPING_NAMES for TF
_CLASS_PREFIX = {"pt": "", "tf": "TF"}  # TFBertModel is BertModel for TF

BASE_TABLE = "MODEL_MAPPING_NAMES"  # the bare model (AutoModel): the inference default


class Labels(str, Enum):
    """The training labels a head takes, made from the inputs by the framework backends."""

    tokens = "tokens"  # labels = input_ids (batch x seq): the language-modelling loss
    sequence = "sequence"  # labels = class 0 for each sequence (batch)
    token = "token"  # labels = class 0 for each token (batch x seq)
    span = "span"  # start_positions = end_positions = 0 (batch)


# The auto tables whose heads sweeper can train, with the labels each takes, in the order the
# training default is looked up: the old tool's MODEL_WITH_LM_HEAD_MAPPING first, then the other
# language-model heads (sequence-to-sequence before causal: MBart has both, and its causal class
# is the decoder alone; masked before causal: an encoder's own objective), then sequence
# classification for families with no LM head at all.
TRAINING_TABLES = (
    ("MODEL_WITH_LM_HEAD_MAPPING_NAMES", Labels.tokens),
    ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", Labels.tokens),
    ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", Labels.tokens),
    ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", Labels.tokens),
    ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", Labels.sequence),
    ("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES", Labels.token),
    ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES", Labels.span),
)
_DEFAULT_TRAINING_TABLES = TRAINING_TABLES[:5]


def transformers_module(name: str = "transformers"):
    """Import a transformers module; the first import of transformers is framework-free, quiet."""
    if "transformers" in sys.modules:
        return importlib.import_module(name)
    saved = {key: os.environ.get(key) for key in _QUIET_IMPORT_ENV}
    os.environ.update(_QUIET_IMPORT_ENV)
    try:
        return importlib.import_module(name)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _auto_config():
    return transformers_module("transformers.models.auto.configuration_auto")


def model_types() -> List[str]:
    """Every model_type transformers knows, in its own order (CONFIG_MAPPING_NAMES)."""
    return list(_auto_config().CONFIG_MAPPING_NAMES)


def close_model_types(model_type: str) -> List[str]:
    return difflib.get_close_matches(str(model_type), model_types(), n=3)


def config_class(model_type: str) -> Optional[type]:
    """transformers' config class of ``model_type`` (e.g. GPT2Config), or None if unknown."""
    module = _auto_config()
    if model_type not in module.CONFIG_MAPPING_NAMES:
        return None
    return module.CONFIG_MAPPING[model_type]


@dataclass(frozen=True)
class ConfigKeys:
    """The keys a config class takes, all read from transformers.

    ``own``: the ``__init__`` parameters of the class and of its parents below PretrainedConfig;
    ``common``: PretrainedConfig's own parameters (token ids, labels, ...); ``aliases``: the
    class's ``attribute_map`` (GPT2Config: hidden_size -> n_embd); ``sub_configs``: nested
    config classes (Gemma3Config: text_config, vision_config).
    """

    cls: type
    own: Tuple[str, ...]
    common: Tuple[str, ...]
    aliases: Mapping[str, str]
    sub_configs: Mapping[str, type]

    @property
    def name(self) -> str:
        return self.cls.__name__

    def is_key(self, key: str) -> bool:
        return key in self.own or key in self.common

    def names(self) -> List[str]:
        """Every name the class accepts: keys and aliases (for did-you-mean suggestions)."""
        return [*self.own, *self.aliases, *self.common]


def _parameters(function) -> List[str]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return [p.name for p in signature.parameters.values() if p.kind not in kinds][1:]  # no self


@functools.cache
def config_keys(cls: type) -> ConfigKeys:
    base = transformers_module("transformers.configuration_utils").PretrainedConfig
    own: List[str] = []
    for klass in cls.__mro__:
        if klass is base or not (isinstance(klass, type) and issubclass(klass, base)):
            break
        if "__init__" in vars(klass):
            own += [name for name in _parameters(klass.__init__) if name not in own]
    common = tuple(name for name in _parameters(base.__init__) if name not in own)
    return ConfigKeys(
        cls=cls,
        own=tuple(own),
        common=common,
        aliases=_class_mapping(cls, "attribute_map"),
        sub_configs=_class_mapping(cls, "sub_configs"),
    )


def _class_mapping(cls: type, name: str) -> Dict[str, object]:
    """A dict class attribute of a config class; where the class computes it in a property
    (DetrConfig's sub_configs follow its backbone), the default instance's."""
    value = getattr(cls, name, None)
    if not isinstance(value, Mapping):
        try:
            value = getattr(cls(), name, None)
        except Exception:
            value = None
    return dict(value) if isinstance(value, Mapping) else {}


@functools.cache
def derived_from(cls: type, attribute: str) -> Optional[str]:
    """The parameter that a non-parameter attribute is set from, or None.

    BartConfig is not given ``num_hidden_layers``: its ``__init__`` sets it from
    ``encoder_layers``. Found by building the class with each integer parameter changed in turn
    and watching the attribute; None unless exactly one parameter moves it.
    """
    try:
        default = cls()
    except Exception:
        return None
    if attribute not in vars(default):
        return None
    before = getattr(default, attribute)
    found = []
    for key in config_keys(cls).own:
        value = vars(default).get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        try:
            probe = cls(**{key: value + 1})
        except Exception:
            continue
        if getattr(probe, attribute, before) != before:
            found.append(key)
    return found[0] if len(found) == 1 else None


def sub_config_class(cls: type, name: str, value: Mapping[str, object]) -> Optional[type]:
    """The config class of ``cls``'s nested config ``name`` given as ``value``, or None.

    ``sub_configs`` names it, unless it says AutoConfig (Llava: any text model); then the
    nested ``model_type`` decides, else the class the parent builds by default.
    """
    base = transformers_module("transformers.configuration_utils").PretrainedConfig
    if isinstance(value.get("model_type"), str):
        return config_class(value["model_type"])
    declared = config_keys(cls).sub_configs.get(name)
    if isinstance(declared, type) and issubclass(declared, base):
        return declared
    try:
        default = getattr(cls(), name, None)
    except Exception:
        return None
    return type(default) if isinstance(default, base) else None


# ------------------------------------------------------------------------------------------------
# Head classes: transformers' auto tables, names only


@functools.cache
def _tables(framework: str) -> Dict[str, Mapping[str, object]]:
    """{table name without the TF_ prefix: {model_type: class name or tuple of names}}."""
    module = transformers_module(_TABLE_MODULES[framework])
    prefix = _TABLE_PREFIX[framework]
    return {
        name[len(prefix) :]: getattr(module, name)
        for name in dir(module)
        if name.startswith(prefix + "MODEL") and name.endswith("_MAPPING_NAMES")
    }


def _names(value: object) -> Tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, (tuple, list)) else ()


def framework_class_name(name: str, framework: str) -> str:
    """``BertForMaskedLM`` or ``TFBertForMaskedLM`` as the class of ``framework`` is named."""
    bare = name[2:] if name.startswith("TF") and name[2:3].isupper() else name
    return _CLASS_PREFIX[framework] + bare


def head_classes(model_type: str, framework: str) -> Dict[str, str]:
    """Every class the auto tables list for ``model_type`` in ``framework``: {name: first table}."""
    found: Dict[str, str] = {}
    for table, mapping in sorted(_tables(framework).items()):
        for name in _names(mapping.get(model_type)):
            found.setdefault(name, table)
    return found


def base_class(model_type: str, framework: str) -> Optional[str]:
    """The bare model's class name (AutoModel / TFAutoModel), or None if ``framework`` has none."""
    names = _names(_tables(framework)[BASE_TABLE].get(model_type))
    return names[0] if names else None


def training_class(model_type: str, framework: str) -> Optional[Tuple[str, Labels]]:
    """The default class to train and its labels: a language-model head, else a classifier."""
    tables = _tables(framework)
    for table, labels in _DEFAULT_TRAINING_TABLES:
        names = _names(tables.get(table, {}).get(model_type))
        if names:
            return names[0], labels
    return None


def labels_of(class_name: str, model_type: str, framework: str) -> Optional[Labels]:
    """The training labels of a head class, from the first training table that lists it."""
    tables = _tables(framework)
    for table, labels in TRAINING_TABLES:
        if class_name in _names(tables.get(table, {}).get(model_type)):
            return labels
    return None


def owners(class_name: str) -> List[str]:
    """The model types whose tables (either framework) list ``class_name`` (TF prefix ignored)."""
    found = []
    for framework in FRAMEWORKS:
        name = framework_class_name(class_name, framework)
        for mapping in _tables(framework).values():
            for model_type, value in mapping.items():
                if name in _names(value) and model_type not in found:
                    found.append(model_type)
    return found


def class_module(class_name: str) -> Optional[str]:
    """Where transformers defines ``class_name`` (e.g. models.gpt2.modeling_gpt2), from its lazy
    import structure: nothing is imported. None if transformers has no such name."""
    structure = getattr(transformers_module(), "_class_to_module", None) or {}
    return structure.get(class_name)


@functools.cache
def positions_after_padding(model_type: str) -> bool:
    """Whether the model numbers positions from ``pad_token_id + 1`` (RoBERTa and its kind:
    fairseq's make_positions), so that many entries of ``max_position_embeddings`` are never used.

    Read from the PyTorch modeling source, not imported: it defines
    ``create_position_ids_from_input_ids`` and sizes a learned position table by
    ``config.max_position_embeddings`` (sinusoidal tables and BART's offset table are sized
    with the offset included, so they have no such loss).
    """
    base = base_class(model_type, "pt")
    module = class_module(base) if base else None
    if not module:
        return False
    source = (
        Path(transformers_module().__file__).parent.joinpath(*module.split(".")).with_suffix(".py")
    )
    try:
        text = source.read_text()
    except OSError:
        return False
    return "def create_position_ids_from_input_ids(" in text and bool(
        re.search(r"nn\.Embedding\(\s*config\.max_position_embeddings", text)
    )


# ------------------------------------------------------------------------------------------------
# python -m sweeper --info models


def catalogue() -> List[Tuple[str, str, Optional[str], Optional[str]]]:
    """(model_type, config class, PyTorch base class, TensorFlow base class) for every type."""
    names = _auto_config().CONFIG_MAPPING_NAMES
    return [(t, names[t], base_class(t, "pt"), base_class(t, "tf")) for t in names]


def catalogue_text() -> str:
    rows = catalogue()
    version = getattr(transformers_module(), "__version__", "?")
    width = max(len(r[0]) for r in rows) + 2
    cls_width = max(len(r[1]) for r in rows) + 2
    pt_width = max(len(r[2] or "-") for r in rows) + 2
    lines = [
        f"Model types of transformers {version}: {len(rows)}; "
        f"{sum(1 for r in rows if r[2])} with a PyTorch base-model class, "
        f"{sum(1 for r in rows if r[3])} with a TensorFlow one.",
        "Benchmark one:  python -m sweeper model=auto model.model_type=TYPE "
        "model.num_hidden_layers=2 ...",
        "(keys: the config class's parameters and aliases; text models take input_ids)",
        "",
        f"{'model_type':<{width}}{'config class':<{cls_width}}{'PyTorch':<{pt_width}}TensorFlow",
    ]
    for model_type, config_name, pt, tf in rows:
        lines.append(
            f"{model_type:<{width}}{config_name:<{cls_width}}{pt or '-':<{pt_width}}{tf or '-'}"
        )
    return "\n".join(lines)
