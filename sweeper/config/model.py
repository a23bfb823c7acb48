"""A model as the user names it, resolved against transformers' config class before any job runs.

Three ways to name a model: a preset (``model=gpt2``: conf/model/gpt2.yaml), a model type with
its class's defaults (``model=auto model.model_type=qwen2``), or a checkpoint's config
(``model.pretrained=FOLDER_OR_HUB_ID``: its config.json, weights random as always). On top of
any of them, every key of the config class and every alias in its ``attribute_map``
(``model.hidden_size=384`` on GPT-2 is ``n_embd``) works.

:func:`resolve` runs in the Hydra process: it reads the pretrained config, checks every key
against the class (unknown keys are refused with a "did you mean" drawn only from that class's
own names and aliases), maps aliases onto the keys they stand for and builds the config once to
check the values. The result is the record's ``config.model``: the keyword arguments the worker
gives the class, in the class's own names, so the worker needs neither the Hub nor this module.
:func:`shape_problem` and :func:`positions_limit` read hidden size, heads and positions through
the same aliases, for every family.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from . import catalog
from .problems import InputError, UnknownKeyError
from .schema import ModelConfig

__all__ = [
    "build_config",
    "check_architecture",
    "default_name",
    "overridden_model_keys",
    "positions_limit",
    "read_pretrained",
    "resolve",
    "shape_problem",
]

# Keys of PretrainedConfig that sweeper sets through an option of its own.
_MANAGED_KEYS = {
    "architectures": "model.architecture=NAME (one head class)",
    "torchscript": "framework.torchscript=true",
}
# Entries of a checkpoint's config.json that describe the file, not the model.
_FILE_ONLY_KEYS = ("model_type", "_name_or_path", "transformers_version", "_commit_hash")
# An alias that names an encoder_* key of an encoder-decoder class sets its decoder_* twin too
# (model.num_attention_heads=4 on BART: 4 heads in both stacks), unless that key is given.
_ENCODER, _DECODER = "encoder_", "decoder_"

_LIST_LIMIT = 40  # names shown in a message before "... and N more"
# difflib's similarity above which a name counts as a misspelling of a key: 0.8 takes
# hiden_size -> hidden_size (0.95) and num_layers -> n_layers (0.89) but not n_embd -> n_heads
# (0.62, difflib's default cutoff is 0.6): a suggestion must not change the meaning.
_SPELLING_CUTOFF = 0.8
# PretrainedConfig's keys named in an unknown-key message (all of them are accepted).
_COMMON_SHOWN = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
    "num_labels",
)


def overridden_model_keys(overrides: Sequence[str]) -> Set[str]:
    """The model keys a job's command-line overrides set: model.hidden_size=384 -> hidden_size."""
    keys = set()
    for override in overrides:
        key, sep, _ = override.lstrip("+~").partition("=")
        if sep and key.startswith("model."):
            keys.add(key[len("model.") :].split(".")[0])
    return keys


def default_name(model: ModelConfig) -> str:
    """The label of a model without ``name``: its pretrained folder or Hub id, or its type."""
    if model.pretrained:
        path = Path(model.pretrained).expanduser()
        return path.name if path.is_dir() else model.pretrained
    return model.model_type or "model"


# ------------------------------------------------------------------------------------------------
# model.pretrained


def read_pretrained(ref: str) -> Dict[str, Any]:
    """config.json of a checkpoint folder, a config.json file, or a Hub id (the Hub cache first).

    Without network, a Hub id not in the cache is refused with the id and the cache folder.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise InputError(
                f"model.pretrained={ref}: the folder has no config.json; give a checkpoint folder "
                "(one with config.json), a config.json file, or a Hub id such as gpt2"
            )
    elif not path.is_file():
        path = _hub_config(ref)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"model.pretrained={ref}: cannot read {path} as JSON ({exc}); give a checkpoint's "
            "config.json"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"model.pretrained={ref}: {path} holds no JSON object; give a config.json")
    return data


def _hub_config(ref: str) -> Path:
    from huggingface_hub import constants, hf_hub_download

    try:
        return Path(hf_hub_download(ref, "config.json"))
    except Exception as exc:  # offline, unknown id, bad id: all say the same to the user
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else "no details"
        raise InputError(
            f"model.pretrained={ref}: no folder {ref!r} here, and the Hub id {ref} has no "
            f"config.json in the Hub cache ({constants.HF_HUB_CACHE}) nor could one be "
            f"downloaded ({type(exc).__name__}: {reason}). Give a local checkpoint folder, or "
            f"fetch the config on a machine with network (huggingface-cli download {ref} "
            "config.json) and copy the cache over"
        ) from None


# ------------------------------------------------------------------------------------------------
# Keys


def _listing(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= _LIST_LIMIT:
        return ", ".join(names)
    return f"{', '.join(names[:_LIST_LIMIT])}, ... and {len(names) - _LIST_LIMIT} more"


def _unknown(keys: catalog.ConfigKeys, model_type: str, path: str, key: str) -> str:
    known = keys.names()
    close = difflib.get_close_matches(key, known, n=1, cutoff=_SPELLING_CUTOFF)
    lines = [f"unknown key {path}{key}: {keys.name} (model_type={model_type}) has no key '{key}'."]
    if close:
        meaning = f" (an alias of {keys.aliases[close[0]]})" if close[0] in keys.aliases else ""
        lines.append(f"Did you mean {path}{close[0]}{meaning}?")
    aliases = ", ".join(f"{a} -> {t}" for a, t in keys.aliases.items())
    common = [k for k in _COMMON_SHOWN if k in keys.common]
    lines.append(
        f"Keys of {keys.name}: {_listing(keys.own)}"
        + (f"; aliases: {aliases}" if aliases else "")
        + (f"; nested configs: {', '.join(keys.sub_configs)}" if keys.sub_configs else "")
        + f"; and PretrainedConfig's common keys ({', '.join(common)}, ...)."
    )
    lines.append(
        "Fix the spelling on the command line or in your YAML; python -m sweeper --info models "
        "lists the model types."
    )
    return "\n".join(lines)


def _twin(keys: catalog.ConfigKeys, target: str) -> Optional[str]:
    if target.startswith(_ENCODER):
        twin = _DECODER + target[len(_ENCODER) :]
        if keys.is_key(twin):
            return twin
    return None


def _resolve_keys(
    keys: catalog.ConfigKeys,
    model_type: str,
    given: Mapping[str, Any],
    overridden: Set[str],
    path: str,
    problems: List[str],
) -> Dict[str, Any]:
    """``given`` in the class's own names: aliases mapped, nested configs checked.

    Order, later wins: keys as composed (preset, YAML), then aliases (with their decoder twins),
    then keys given on the command line. An alias and its key both on the command line with
    different values are refused.
    """
    plain: Dict[str, Any] = {}
    aliased: Dict[str, Tuple[str, Any]] = {}  # alias -> (target, value)
    for key, value in given.items():
        if key in _MANAGED_KEYS:
            problems.append(f"{path}{key} is set by sweeper; use {_MANAGED_KEYS[key]}")
        elif key in keys.sub_configs and isinstance(value, Mapping):
            sub_cls = catalog.sub_config_class(keys.cls, key, value)
            if sub_cls is None:  # nothing to check it against: the parent class judges it
                plain[key] = dict(value)
                continue
            sub = catalog.config_keys(sub_cls)
            inner = {k: v for k, v in value.items() if k != "model_type"}
            sub_type = value.get("model_type") or getattr(sub_cls, "model_type", "")
            nested = _resolve_keys(sub, sub_type, inner, set(), f"{path}{key}.", problems)
            # The nested config names the type it was checked against, as transformers' own
            # config.json files do: a parent that takes any type (Llava's text model,
            # Mask2Former's backbone) cannot build a dict without it.
            if sub_type:
                nested["model_type"] = sub_type
            plain[key] = nested
        elif keys.is_key(key):
            plain[key] = value
        elif key in keys.aliases:
            aliased[key] = (keys.aliases[key], value)
        elif catalog.derived_from(keys.cls, key):
            aliased[key] = (catalog.derived_from(keys.cls, key), value)
        else:
            problems.append(_unknown(keys, model_type, path, key))
    resolved = {k: v for k, v in plain.items() if k not in overridden}
    for alias, (target, value) in aliased.items():
        if target in overridden and alias in overridden and plain.get(target) != value:
            problems.append(
                f"{path}{alias}={value} and {path}{target}={plain.get(target)} set the same key "
                f"of {keys.name} ({alias} is its alias of {target}); give one of them"
            )
        resolved[target] = value
        twin = _twin(keys, target)
        if twin and twin not in overridden:
            resolved[twin] = value
    resolved.update({k: v for k, v in plain.items() if k in overridden})
    return resolved


def resolve(node: Mapping[str, Any], overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """The model node resolved: own keys, then the config keys in the class's own names.

    ``overrides`` are the job's command-line overrides: a key given there wins over an alias of
    it from a preset, and an alias wins over the key it stands for from a preset.
    """
    model = ModelConfig.from_node(node)
    start: Dict[str, Any] = {}
    if model.pretrained:
        pretrained = read_pretrained(model.pretrained)
        file_type = pretrained.get("model_type")
        if model.model_type and file_type and model.model_type != file_type:
            raise InputError(
                f"model.model_type={model.model_type}, but the config.json of model.pretrained="
                f"{model.pretrained} says model_type={file_type}; drop model.model_type (use "
                "model=auto) or point model.pretrained at a checkpoint of that type"
            )
        model.model_type = model.model_type or file_type
        start = {k: v for k, v in pretrained.items() if k not in _FILE_ONLY_KEYS}
        architectures = pretrained.get("architectures") or []
        if model.architecture is None and architectures and model.model_type:
            # The old tool benchmarked config.architectures[0]; a class this transformers does not
            # have (remote code) is left out: the default classes are used.
            if _architecture_problem(str(architectures[0]), model.model_type) is None:
                model.architecture = str(architectures[0])
    if not model.model_type:
        raise InputError(
            "model.model_type is not set: name a model type (model=auto model.model_type=TYPE; "
            "python -m sweeper --info models lists them) or a checkpoint "
            "(model=auto model.pretrained=FOLDER_OR_HUB_ID)"
        )
    cls = catalog.config_class(model.model_type)
    if cls is None:
        close = catalog.close_model_types(model.model_type)
        raise InputError(
            f"model.model_type={model.model_type} is not a model type of transformers "
            f"{catalog.transformers_module().__version__}"
            + (f"; did you mean {' or '.join(close)}?" if close else ";")
            + " python -m sweeper --info models lists them all"
        )
    keys = catalog.config_keys(cls)
    problems: List[str] = []
    given = _resolve_keys(
        keys, model.model_type, model.config, overridden_model_keys(overrides), "model.", problems
    )
    unknown = [p for p in problems if p.startswith("unknown key")]
    if unknown:
        raise UnknownKeyError("\n".join(unknown))
    if problems:
        raise InputError("; ".join(problems))
    model.config = {**start, **given}
    for key, value in given.items():  # a nested config's keys go on top of the file's, key by key
        if isinstance(value, Mapping) and isinstance(start.get(key), Mapping):
            model.config[key] = {**start[key], **value}
    if model.architecture:
        check_architecture(model.architecture, model.model_type)
    build_config(model)  # the class checks the values itself
    return model.to_node()


def build_config(model: ModelConfig):
    """The transformers config object of a resolved model (in the Hydra process: no framework)."""
    cls = catalog.config_class(model.model_type)
    try:
        return cls(**copy.deepcopy(model.config))  # some classes pop from nested dicts
    except Exception as exc:
        raise InputError(
            f"{cls.__name__} (model_type={model.model_type}) refused the model's values: "
            f"{type(exc).__name__}: {exc}; change the model keys named there"
        ) from None


# ------------------------------------------------------------------------------------------------
# Head class


def _architecture_problem(architecture: str, model_type: str) -> Optional[str]:
    pt = catalog.head_classes(model_type, "pt")
    tf = catalog.head_classes(model_type, "tf")
    bare = catalog.framework_class_name(architecture, "pt")
    if bare in pt or catalog.framework_class_name(architecture, "tf") in tf:
        return None
    module = catalog.class_module(bare) or catalog.class_module(
        catalog.framework_class_name(architecture, "tf")
    )
    family = f"models.{_module_of(model_type)}."
    if module and module.startswith(family):
        return None  # a class of this family that no auto table lists
    owners = [t for t in catalog.owners(bare) if t != model_type]
    if owners:
        what = f"is a head class of {', '.join(owners)}, not of model_type={model_type}"
    elif module:
        what = f"is not a model class of model_type={model_type} ({module})"
    else:
        what = f"is no class of transformers {catalog.transformers_module().__version__}"
    heads = sorted(set(pt) | {catalog.framework_class_name(n, "pt") for n in tf})
    return (
        f"model.architecture={architecture} {what}. Head classes of {model_type}: "
        f"{_listing(heads) or 'none'}; or model.architecture=null for the bare model "
        "(inference) and the language-model head (training)"
    )


def _module_of(model_type: str) -> str:
    base = catalog.base_class(model_type, "pt") or catalog.base_class(model_type, "tf")
    module = catalog.class_module(base) if base else None
    if module:
        return module.split(".")[1]
    return catalog.transformers_module(
        "transformers.models.auto.configuration_auto"
    ).model_type_to_module_name(model_type)


def check_architecture(architecture: str, model_type: str) -> None:
    """Refuse a head class that is not one of ``model_type``'s, naming the family's classes."""
    problem = _architecture_problem(architecture, model_type)
    if problem:
        raise InputError(problem)


# ------------------------------------------------------------------------------------------------
# Checks through the canonical names (attribute_map aliases): every family


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _named(hf_config: Any, canonical: str, value: Any) -> str:
    """``hidden_size=384``, or ``hidden_size=384 (n_embd)`` where the class calls it otherwise."""
    real = getattr(type(hf_config), "attribute_map", {}).get(canonical, canonical)
    return f"{canonical}={value}" + (f" ({real})" if real != canonical else "")


def shape_problem(model: ModelConfig) -> Optional[str]:
    """Why the attention heads cannot split the hidden size, or None when they can.

    Checked where the class has no explicit head size (``head_dim``, T5's ``d_kv``): there the
    heads need not divide the hidden size. Grouped-query attention: the key/value heads must
    divide the query heads.
    """
    hf_config = build_config(model)
    hidden = _int(getattr(hf_config, "hidden_size", None))
    heads_keys = ["num_attention_heads"]
    if hasattr(hf_config, "decoder_attention_heads"):
        heads_keys.append("decoder_attention_heads")
    if hidden and _int(getattr(hf_config, "head_dim", None)) is None:
        for key in heads_keys:
            heads = _int(getattr(hf_config, key, None))
            if heads is not None and (heads <= 0 or hidden % heads):
                suggestion = max(heads, 1) * max(1, round(hidden / max(heads, 1)))
                return (
                    f"{_named(hf_config, 'hidden_size', hidden)} is not divisible by "
                    f"{_named(hf_config, key, heads)}; choose hidden_size as a multiple of "
                    f"{key} (e.g. model.hidden_size={suggestion})"
                )
    heads = _int(getattr(hf_config, "num_attention_heads", None))
    kv_heads = _int(getattr(hf_config, "num_key_value_heads", None))
    if heads and kv_heads is not None and (kv_heads <= 0 or heads % kv_heads):
        return (
            f"{_named(hf_config, 'num_attention_heads', heads)} is not divisible by "
            f"{_named(hf_config, 'num_key_value_heads', kv_heads)}; choose num_key_value_heads "
            "as a divisor of num_attention_heads"
        )
    return None


def positions_limit(model: ModelConfig) -> Optional[Tuple[int, int]]:
    """(longest input, positions it takes) of learned absolute positions; None when unlimited.

    RoBERTa and its kind number positions from ``pad_token_id + 1``: that many fewer are usable.
    """
    hf_config = build_config(model)
    positions = _int(getattr(hf_config, "max_position_embeddings", None))
    if positions is None or positions <= 0:  # XLNetConfig says -1: no limit
        return None
    offset = 0
    pad = _int(getattr(hf_config, "pad_token_id", None))
    if pad is not None and catalog.positions_after_padding(model.model_type):
        offset = pad + 1
    return positions - offset, offset
