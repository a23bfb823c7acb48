"""The framework interface: build the model, make inputs, run a step, wait for the device.

Implementations live in ``pt.py`` and ``tf.py`` and are imported by name only when chosen, so a
PyTorch cell never imports TensorFlow and the collector imports neither. What both build is
planned here, for any model type, from transformers itself (:class:`ModelPlan`): the class from
its auto tables, the inputs and training labels from that class's ``forward`` / ``call``.

Building has two phases so that a built model can serve many cells: :meth:`Backend.build_model`
(the model only: no input, no forward pass) and :meth:`Backend.make_step` (the cell's inputs and
the callable to measure). Where :attr:`Backend.fork_after_build` is true, a process may build
once and fork a fresh child per cell that runs ``after_fork``, ``make_step`` and the
measurement (sweeper.engine.zygote). Where it is false but :attr:`Backend.weights_snapshots`
is true (TensorFlow), one process builds the model and writes its initial weights to a memory
file (:meth:`Backend.save_weights`), and every cell builds its own model from that file
(``build_model(weights=...)``) instead of drawing the random weights again.
"""

from __future__ import annotations

import abc
import copy
import importlib
import inspect
import json
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from ..config import catalog
from ..config.catalog import Labels
from ..config.schema import Config
from ..record import Mode

__all__ = [
    "Backend",
    "CellError",
    "ModelPlan",
    "NoForkAfterBuild",
    "NoWeightsSnapshot",
    "WeightsSnapshot",
    "describe_config",
    "load",
    "plan_model",
]

INFERENCE = Mode.inference
# Read from every built config into the record, whatever the family calls them (attribute_map).
CANONICAL_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "vocab_size",
)


class CellError(RuntimeError):
    """The cell cannot run as configured on this machine; the message says why and what to do."""


class NoForkAfterBuild(RuntimeError):
    """This backend cannot build a model in a process that forks afterwards (the message says
    why): every cell builds its own, and the zygote stops asking."""


class NoWeightsSnapshot(RuntimeError):
    """This cell's model cannot be built from a weights snapshot (the message says why): it
    draws its own random weights."""


@dataclass
class WeightsSnapshot:
    """A built model's initial weights, in the order the build created its variables.

    ``fd``: a file (a memfd: memory that goes when the last process holding it ends) with every
    variable's bytes; ``variables``: per variable ``(name, shape, dtype, offset, nbytes)``.
    """

    fd: int
    variables: List[Tuple[str, List[int], str, int, int]]


class Backend(abc.ABC):
    """One framework on one device, for one cell."""

    display_name: str  # as the old tool's environment block: PyTorch / Tensorflow
    model: object  # the model build_model() made: its class name goes into the record
    model_config: Optional[Dict[str, object]] = None  # build_model(): as describe_config
    model_parameters: Optional[int] = None  # build_model(): the model's parameter count

    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def fork_after_build(self) -> bool:
        """Whether a child forked after :meth:`build_model` can run the model safely.

        False by default: a framework whose runtime keeps threads or a device context after a
        build leaves a forked child waiting on threads that do not exist in it.
        """
        return False

    #: Why :attr:`fork_after_build` is false, for the record.
    no_fork_reason = "this framework's runtime keeps threads after a build"

    #: Whether models are shared between cells as weights snapshots (:meth:`save_weights`,
    #: ``build_model(weights=...)``) rather than by forking after a build.
    weights_snapshots = False

    @abc.abstractmethod
    def build_model(
        self, mode: Mode, for_fork: bool = False, weights: Optional[WeightsSnapshot] = None
    ) -> object:
        """Build the model with random weights on the device; run nothing on it.

        ``for_fork``: the process will fork children after this, so the build must leave no
        thread pool running (only allowed where :attr:`fork_after_build`).
        ``weights``: take the initial weights from this snapshot of the same model (made by
        :meth:`save_weights` after a build with the same config) instead of drawing them.
        """

    def weights_snapshot_refusal(self) -> Optional[str]:
        """Why this cell's model cannot be shared as a weights snapshot, or None if it can."""
        return f"{self.display_name} models are not shared as weights snapshots"

    def save_weights(self, fd: int) -> WeightsSnapshot:
        """Write the initial weights of the model :meth:`build_model` made to ``fd``."""
        raise NoWeightsSnapshot(self.weights_snapshot_refusal() or "not implemented")

    def after_fork(self) -> None:  # noqa: B027 - nothing to undo unless build_model changed it
        """In a child forked after :meth:`build_model`: restore what the build changed."""

    @abc.abstractmethod
    def make_step(self, mode: Mode) -> Callable[[], object]:
        """The cell's inputs and the step to measure, for the model :meth:`build_model` made."""

    def build(self, mode: Mode) -> Callable[[], object]:
        """Both phases in one process: the step to measure."""
        self.build_model(mode)
        return self.make_step(mode)

    @abc.abstractmethod
    def sync(self) -> None:
        """Block until every queued device operation has finished."""

    @abc.abstractmethod
    def info(self) -> Dict[str, object]:
        """Framework version, threads, device: what the record needs to be reproducible."""

    def gpu_memory_reset(self) -> None:  # noqa: B027 - a no-op is right on the CPU
        """Reset the framework allocator's peak counters (GPU only)."""

    def gpu_memory_peaks_mib(self) -> Dict[str, float]:
        """The framework allocator's peaks since the last reset (GPU only)."""
        return {}

    @staticmethod
    def is_oom(exc: BaseException) -> bool:
        """Whether ``exc`` means the device or host ran out of memory."""
        return isinstance(exc, MemoryError)


def load(name: str) -> type:
    """The Backend class of framework ``name`` (pt | tf), importing only that framework."""
    module = importlib.import_module(f"{__name__}.{name}")
    return module.BACKEND


@dataclass
class ModelPlan:
    """What a backend builds and how it calls it, all derived from transformers for any family.

    The class: ``model.architecture`` (the old ``config.architectures[0]``) unless
    ``only_pretrain_model``; otherwise the bare model (AutoModel's table) for inference and, for
    training, the first head the auto tables list with a loss sweeper can feed (a language-model
    head, else a classifier: sweeper.config.catalog.TRAINING_TABLES). The inputs: whatever the
    class's ``forward`` (TF: ``call``) takes of token ids, decoder token ids (encoder-decoders:
    ``decoder_input_ids = input_ids``, as the old tool did) and the head's labels; never
    ``token_type_ids`` or a mask, which every such forward defaults. A class that needs anything
    else (pixel values, audio features) is refused with its inputs named.
    """

    cls: type
    hf_config: object
    vocab_size: int  # token ids are drawn below this
    decoder_inputs: bool  # pass decoder_input_ids = input_ids
    labels: Optional[Labels]  # training labels; None for inference

    def arguments(self, input_ids: object, zeros: Callable[[tuple], object]) -> Dict[str, object]:
        """Keyword arguments of one call; ``zeros(shape)`` makes integer zeros (class labels)."""
        batch, seq = (int(n) for n in input_ids.shape)
        args: Dict[str, object] = {"input_ids": input_ids}
        if self.decoder_inputs:
            args["decoder_input_ids"] = input_ids
        if self.labels is Labels.tokens:
            args["labels"] = input_ids
        elif self.labels is Labels.sequence:
            args["labels"] = zeros((batch,))
        elif self.labels is Labels.token:
            args["labels"] = zeros((batch, seq))
        elif self.labels is Labels.span:
            args["start_positions"] = args["end_positions"] = zeros((batch,))
        return args


_LABEL_ARGUMENTS = {
    Labels.tokens: ("labels",),
    Labels.sequence: ("labels",),
    Labels.token: ("labels",),
    Labels.span: ("start_positions", "end_positions"),
}
# Config attributes that bound the token ids a model embeds (FSMT and Marian have several).
_VOCAB_KEYS = ("vocab_size", "decoder_vocab_size", "src_vocab_size", "tgt_vocab_size")


def _heads(model_type: str, framework: str) -> str:
    names = sorted(catalog.head_classes(model_type, framework))
    return ", ".join(names) if names else "none"


def _class_name(config: Config, mode: str, framework: str) -> tuple:
    """(class name, training labels or None) by the rules in ModelPlan's docstring."""
    model = config.model
    model_type = model.model_type
    if model.architecture and not config.only_pretrain_model:
        name = catalog.framework_class_name(model.architecture, framework)
        return name, catalog.labels_of(name, model_type, framework)
    other = "tf" if framework == "pt" else "pt"
    if mode == INFERENCE:
        name, what = catalog.base_class(model_type, framework), "base-model"
        if name:
            return name, None
        has_other = catalog.base_class(model_type, other) is not None
    else:
        found, what = catalog.training_class(model_type, framework), "language-model or classifier"
        if found:
            return found
        has_other = catalog.training_class(model_type, other) is not None
    heads = _heads(model_type, framework)
    fix = f"use framework={other}" if has_other else f"its classes: {heads}"
    raise CellError(
        f"transformers {catalog.transformers_module().__version__} has no "
        f"{catalog.FRAMEWORKS[framework]} {what} class for model_type={model_type} "
        f"(model {model.name or model_type}); {fix}"
    )


def plan_model(transformers: object, mode: str, config: Config, tf: bool) -> ModelPlan:
    """The class, config and inputs of one mode of one cell (see ModelPlan)."""
    framework = "tf" if tf else "pt"
    model = config.model
    model_type = model.model_type
    # A copy: some classes pop from nested dicts (Mask2Former's backbone_config["model_type"]).
    hf_config = transformers.AutoConfig.for_model(model_type, **copy.deepcopy(model.config))
    name, labels = _class_name(config, mode, framework)
    version = getattr(transformers, "__version__", "?")
    try:
        cls = getattr(transformers, name, None)
    except Exception as exc:  # a lazy import that fails: a missing optional dependency
        raise CellError(f"transformers cannot import {name}: {type(exc).__name__}: {exc}") from exc
    chosen = f"model.architecture={model.architecture}" if model.architecture else "the default"
    if cls is None:
        raise CellError(
            f"{chosen}: transformers {version} has no {catalog.FRAMEWORKS[framework]} class "
            f"{name}; its {model_type} classes: {_heads(model_type, framework)}; or set "
            "model.architecture=null for the defaults"
        )
    expected = getattr(cls, "config_class", None)
    if isinstance(expected, type) and not isinstance(hf_config, expected):
        raise CellError(
            f"{chosen}: {name} takes a {expected.__name__}, not the {type(hf_config).__name__} "
            f"of model_type={model_type}; head classes of {model_type}: "
            f"{_heads(model_type, framework)}"
        )
    signature = inspect.signature(cls.call if tf else cls.forward)
    params = {n: p for n, p in signature.parameters.items() if n != "self"}
    if "input_ids" not in params:
        raise CellError(
            f"{name} takes no input_ids (it takes {', '.join(list(params)[:4])}, ...): sweeper "
            "feeds token ids of batch x seq, so it benchmarks text models; model_type="
            f"{model_type} is not one"
        )
    decoder_inputs = bool(getattr(hf_config, "is_encoder_decoder", False)) and (
        "decoder_input_ids" in params
    )
    fed = {"input_ids"} | ({"decoder_input_ids"} if decoder_inputs else set())
    if mode != INFERENCE:
        if labels is None:
            raise CellError(
                f"{name} is no head sweeper can train: it knows the losses of the language-model, "
                "sequence- and token-classification and question-answering heads; name one with "
                f"model.architecture (classes of {model_type}: {_heads(model_type, framework)})"
            )
        missing = [a for a in _LABEL_ARGUMENTS[labels] if a not in params]
        if missing:
            raise CellError(f"{name} takes no {', '.join(missing)}: it cannot be trained here")
        fed |= set(_LABEL_ARGUMENTS[labels])
    else:
        labels = None
    required = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and n not in fed
    ]
    if required:
        raise CellError(
            f"{name} needs {', '.join(required)}, which sweeper does not make (it feeds "
            f"{', '.join(sorted(fed))})"
        )
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    sizes = [getattr(text, key, None) for key in _VOCAB_KEYS]
    sizes = [n for n in sizes if isinstance(n, int) and not isinstance(n, bool) and n > 0]
    if not sizes:
        raise CellError(
            f"{type(hf_config).__name__} has no vocab_size (model_type={model_type}): no token "
            "ids to feed; set model.vocab_size if the class takes one"
        )
    return ModelPlan(
        cls=cls,
        hf_config=hf_config,
        vocab_size=min(sizes),
        decoder_inputs=decoder_inputs,
        labels=labels,
    )


def describe_config(hf_config: object) -> Dict[str, object]:
    """The config a model was built with, for the record: ``to_dict()`` plus the canonical names
    (``hidden_size`` and every alias of the class), so one key reads the same in every family."""
    data = hf_config.to_dict()
    names = [*CANONICAL_KEYS, *getattr(type(hf_config), "attribute_map", {})]
    for name in names:
        if name not in data:
            try:
                value = getattr(hf_config, name)
            except AttributeError:
                continue
            data[name] = value
    return json.loads(json.dumps(data, default=str, allow_nan=False))
