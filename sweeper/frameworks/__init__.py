"""The framework interface: build the model, make inputs, run a step, wait for the device.

Implementations live in ``pt.py`` and ``tf.py`` and are imported by name only when chosen, so a
PyTorch cell never imports TensorFlow and the collector imports neither.

Building has two phases so that a built model can serve many cells: :meth:`Backend.build_model`
(the model only: no input, no forward pass) and :meth:`Backend.make_step` (the cell's inputs and
the callable to measure). Where :attr:`Backend.fork_after_build` is true, a process may build
once and fork a fresh child per cell that runs ``after_fork``, ``make_step`` and the
measurement (sweeper.run.zygote).
"""

from __future__ import annotations

import abc
import importlib
from typing import Callable, Dict

from ..config.schema import Config
from ..record import Mode

__all__ = ["Backend", "CellError", "load"]

INFERENCE = Mode.inference


class CellError(RuntimeError):
    """The cell cannot run as configured on this machine; the message says why and what to do."""


class Backend(abc.ABC):
    """One framework on one device, for one cell."""

    display_name: str  # as the old tool's environment block: PyTorch / Tensorflow
    model: object  # the model build_model() made: its class name goes into the record

    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def fork_after_build(self) -> bool:
        """Whether a child forked after :meth:`build_model` can run the model safely.

        False by default: a framework whose runtime keeps threads or a device context after a
        build leaves a forked child waiting on threads that do not exist in it.
        """
        return False

    @abc.abstractmethod
    def build_model(self, mode: Mode, for_fork: bool = False) -> object:
        """Build the model with random weights on the device; run nothing on it.

        ``for_fork``: the process will fork children after this, so the build must leave no
        thread pool running (only allowed where :attr:`fork_after_build`).
        """

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


def pick_model_class(transformers: object, hf_config: object, mode: str, config: Config, tf: bool):
    """The transformers class to benchmark, with the old tool's rules.

    ``model.architecture`` (the old ``config.architectures[0]``) names a head class unless
    ``only_pretrain_model``; otherwise the bare model for inference and the model with a
    language-modelling head for training (its loss is what ``labels=input_ids`` trains).
    """
    prefix = "TF" if tf else ""
    framework = "TensorFlow" if tf else "PyTorch"
    version = getattr(transformers, "__version__", "?")
    architecture = config.model.architecture
    if architecture and not config.only_pretrain_model:
        bare = architecture[2:] if architecture.startswith("TF") else architecture
        name = prefix + bare
        cls = getattr(transformers, name, None)
        if cls is None:
            raise CellError(
                f"model.architecture={architecture}: transformers {version} has no {framework} "
                f"class {name}; name a class such as BertForMaskedLM, or set "
                "model.architecture=null for the bare model"
            )
        return cls
    mapping_prefix = "TF_" if tf else ""
    if mode == INFERENCE:
        mappings, what = [f"{mapping_prefix}MODEL_MAPPING"], "base-model"
    else:
        mappings = [
            f"{mapping_prefix}MODEL_WITH_LM_HEAD_MAPPING",
            f"{mapping_prefix}MODEL_FOR_CAUSAL_LM_MAPPING",
        ]
        what = "language-model-head"
    for mapping_name in mappings:
        mapping = getattr(transformers, mapping_name)
        if type(hf_config) in mapping:
            return mapping[type(hf_config)]
    model_type = config.model.model_type
    fix = "use framework=pt" if tf else "set model.architecture to a class that exists"
    raise CellError(
        f"transformers {version} has no {framework} {what} class for model_type={model_type} "
        f"(model {config.model.name}); {fix}"
    )
