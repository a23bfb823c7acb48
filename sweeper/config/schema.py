"""Typed schemas of every config group, registered in Hydra's ConfigStore.

A misspelt key (``timing.min_call=3``) or a wrong type (``batch=abc``) fails when Hydra composes
the config, before any job runs, because every node below is a closed dataclass, but one: the
model node is open. Its keys are those of the transformers config class of its ``model_type``
(``BertConfig(hidden_size=...)``, ``GPT2Config(n_embd=...)`` and the aliases each class defines),
a set no hand-kept schema can follow; sweeper.config.model checks them against the real class
before any job runs, with the same exit status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Mapping, Optional

from omegaconf import MISSING

from .problems import InputError

__all__ = [
    "MODEL_OWN_KEYS",
    "Config",
    "Device",
    "DeviceConfig",
    "FrameworkName",
    "ModelConfig",
    "PtConfig",
    "TfConfig",
    "TimingConfig",
    "WorkerStart",
    "register",
]


class FrameworkName(str, Enum):
    pt = "pt"
    tf = "tf"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class WorkerStart(str, Enum):
    fork = "fork"  # fork each worker from a process that imported the framework once (Linux)
    spawn = "spawn"  # start each worker as a new interpreter: one import per cell, any OS


# ---------------------------------------------------------------------------------------------
# Models


# The model node's own keys; every other key of the node is a key of the transformers config
# class of its model_type (checked against that class by sweeper.config.model).
MODEL_OWN_KEYS = ("name", "model_type", "architecture", "pretrained")


@dataclass
class ModelConfig:
    """A model: how it is named and the keyword arguments of its transformers config class.

    In YAML and on the command line the node is flat (``model.hidden_size=384`` next to
    ``model.name``); :meth:`from_node` splits it. The Hydra node is open, so any key reaches
    sweeper.config.model, which checks it against the real config class before any job runs.
    """

    # Label in tables; null: the model_type, or the folder / Hub id of ``pretrained``. Overridden
    # keys are appended to it unless you set model.name.
    name: Optional[str] = None
    model_type: Optional[str] = None  # transformers' model_type: picks the config class
    # Head class to benchmark, e.g. BertForMaskedLM (the old tool's config.architectures[0]).
    # null: the bare model for inference, the model with an LM head for training.
    architecture: Optional[str] = None
    pretrained: Optional[str] = None  # a folder with config.json, or a Hub id: the starting config
    config: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of the config class

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> ModelConfig:
        """Split a flat model node (plain data) into the own keys and the config keys."""
        own = {}
        for key in MODEL_OWN_KEYS:
            value = node.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "name":
                value = str(value)
            if value is not None and not isinstance(value, str):
                raise InputError(
                    f"model.{key}={value!r} must be a name (text) or null, e.g. "
                    f"model.{key}={_EXAMPLES[key]}"
                )
            own[key] = value
        config = {k: v for k, v in node.items() if k not in MODEL_OWN_KEYS}
        return cls(**own, config=config)

    def to_node(self) -> Dict[str, Any]:
        """The flat node again, as stored in a record's config."""
        return {**{key: getattr(self, key) for key in MODEL_OWN_KEYS}, **self.config}


_EXAMPLES = {
    "name": "my-bert",
    "model_type": "bert",
    "architecture": "BertForMaskedLM",
    "pretrained": "path/to/checkpoint",
}


# ---------------------------------------------------------------------------------------------
# Frameworks, timing, the primary config


# Values live in the YAML files (conf/config.yaml, conf/framework/*.yaml): one place each. The
# schemas give types and checks; MISSING means "the YAML must give it".


@dataclass
class PtConfig:
    name: FrameworkName = FrameworkName.pt
    torchscript: bool = MISSING  # trace the model with torch.jit.trace (inference only)
    fp16: bool = MISSING  # model.half(); needs device=cuda
    default_rounds: int = MISSING  # timing.rounds unless set: what a round costs differs


@dataclass
class TfConfig:
    name: FrameworkName = FrameworkName.tf
    eager_mode: bool = MISSING  # run op by op instead of a traced tf.function graph
    use_xla: bool = MISSING  # compile the graph with XLA (jit_compile=True); not with eager_mode
    default_rounds: int = MISSING  # timing.rounds unless set: what a round costs differs


@dataclass
class DeviceConfig:
    name: Device = MISSING


@dataclass
class TimingConfig:
    """When to stop timing a cell; sweeper/measure/timing.py explains each default."""

    warmup_calls: int = MISSING
    warmup_min_s: float = MISSING
    min_calls: int = MISSING
    min_time_s: float = MISSING
    max_calls: int = MISSING
    max_time_s: float = MISSING
    target_ci_pct: float = MISSING  # stop once the median's 95 % CI is within +- this
    rounds: int = MISSING  # fresh processes per cell, spread over the sweep


@dataclass
class Config:
    """The primary config: one cell. Meanings are in conf/config.yaml, beside the values."""

    model: Any = MISSING  # ModelConfig once typed; in Hydra an open node (see the docstring)
    framework: Any = MISSING  # PtConfig or TfConfig, chosen by framework=pt|tf
    device: DeviceConfig = MISSING
    batch: int = MISSING
    seq: int = MISSING
    inference: bool = MISSING
    training: bool = MISSING
    speed: bool = MISSING
    memory: bool = MISSING
    only_pretrain_model: bool = MISSING
    seed: int = MISSING
    timeout_s: float = MISSING
    memory_limit_mib: Optional[int] = MISSING
    force: bool = MISSING
    worker_start: WorkerStart = MISSING
    share_build: bool = MISSING  # one build per model and sweep, shared by its cells
    lock: bool = MISSING  # measure only while holding the host-wide device locks (run/lock.py)
    lock_dir: str = MISSING  # where those locks live: the same absolute folder for every sweep
    timing: TimingConfig = MISSING
    sweep_round: int = MISSING  # which pass over the sweep's cells a job is: set by the sweeper


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent).

    The primary schema's model node is an empty dict with the struct flag off: Hydra closes the
    whole config before it applies overrides, but a node's own flag wins over its parent's, so
    ``model.hidden_size=384`` reaches sweeper.config.model on any preset.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    primary = OmegaConf.structured(Config)
    primary.model = OmegaConf.create({})
    OmegaConf.set_struct(primary.model, False)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=primary)
    cs.store(group="schema/framework", name="pt", node=PtConfig)
    cs.store(group="schema/framework", name="tf", node=TfConfig)
    cs.store(group="schema/device", name="device", node=DeviceConfig)
