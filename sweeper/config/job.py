"""What one job measures: the typed config of a cell, its label, identity and input checks.

The Hydra entry turns the composed config into these objects once (:func:`job_from_config`);
nothing downstream sees a DictConfig. The same plain dict travels to the worker process, which
rebuilds the same objects (:func:`typed_config`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from ..record import MODES, Cell, Mode, Status
from .schema import (
    MODEL_SCHEMAS,
    Config,
    Device,
    DeviceConfig,
    FrameworkName,
    ModelConfig,
    PtConfig,
    TfConfig,
    TimingConfig,
    WorkerStart,
)

__all__ = [
    "Cell",
    "InputError",
    "Job",
    "cell_problem",
    "config_identity",
    "job_from_config",
    "make_job",
    "model_label",
    "typed_config",
    "validate",
]

# Keys that change how a sweep runs, not what a cell measures: a record made with another value
# of these is still the same measurement (and is kept on resume).
NOT_PART_OF_IDENTITY = ("force", "timeout_s", "sweep_round", "lock", "lock_dir")
# Keys that do not change the built model: cells that differ only in these (and in the mode they
# measure) can be forked from one built model (sweeper.run.zygote's builders). A key missing here
# only costs a rebuild; a key here that did change the model would share a wrong one.
NOT_PART_OF_BUILD = (
    *NOT_PART_OF_IDENTITY,
    "batch",
    "seq",
    "inference",
    "training",
    "speed",
    "memory",
    "timing",
    "memory_limit_mib",
    "worker_start",
)


class InputError(ValueError):
    """A config value that makes no sense for any cell; reported before any job runs."""


@dataclass(frozen=True)
class Job:
    """Everything needed to run one cell: the typed config and where it came from."""

    config: Config
    config_dict: Dict[str, Any]  # the resolved config as plain data, as stored in the record
    cell: Cell
    overrides: List[str]
    identity: str  # sha256 of the resolved config without NOT_PART_OF_IDENTITY

    @property
    def modes(self) -> List[Mode]:
        return [m for m in MODES if getattr(self.config, m.value)]

    def build_key(self, mode: Mode) -> str:
        """Equal keys: the same model would be built for ``mode`` (see NOT_PART_OF_BUILD)."""
        essential = {k: v for k, v in self.config_dict.items() if k not in NOT_PART_OF_BUILD}
        return _digest({**essential, "__mode__": Mode(mode).value})


def _build(schema: type, values: Mapping[str, Any], where: str) -> Any:
    known = {f.name for f in fields(schema)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(
            f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)} for {schema.__name__}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    return schema(**values)


def typed_config(data: Mapping[str, Any]) -> Config:
    """Plain resolved config (as from OmegaConf.to_container) -> typed, validated Config."""
    data = dict(data)
    model_data = dict(data.pop("model"))
    model_type = model_data.get("model_type")
    if model_type not in MODEL_SCHEMAS:
        raise InputError(
            f"model.model_type={model_type} has no schema; known model types: "
            f"{', '.join(sorted(MODEL_SCHEMAS))} (add one in sweeper/schema.py)"
        )
    model = _build(MODEL_SCHEMAS[model_type], model_data, "model")
    framework_data = dict(data.pop("framework"))
    framework_name = FrameworkName(framework_data["name"])
    framework = _build(
        PtConfig if framework_name is FrameworkName.pt else TfConfig, framework_data, "framework"
    )
    framework.name = framework_name
    device = DeviceConfig(name=Device(dict(data.pop("device"))["name"]))
    timing = _build(TimingConfig, data.pop("timing"), "timing")
    config = _build(Config, data, "")
    config.model, config.framework, config.device, config.timing = model, framework, device, timing
    config.worker_start = WorkerStart(config.worker_start)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Reject values that no cell could run with; the message names the value and the fix."""
    for key in ("batch", "seq"):
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(f"{key}={value} must be a positive integer, e.g. {key}=8")
    if not (config.inference or config.training):
        raise InputError(
            "inference=false and training=false leave nothing to measure; set inference=true "
            "or training=true"
        )
    if not (config.speed or config.memory):
        raise InputError(
            "speed=false and memory=false leave nothing to measure; set speed=true or memory=true"
        )
    t = config.timing
    for key in ("warmup_calls", "min_calls", "max_calls", "rounds"):
        if getattr(t, key) < (0 if key == "warmup_calls" else 1):
            raise InputError(f"timing.{key}={getattr(t, key)} is out of range; use a value >= 1")
    if config.sweep_round < 1:
        raise InputError(f"sweep_round={config.sweep_round}: the sweeper sets it; leave it out")
    if t.min_calls > t.max_calls:
        raise InputError(
            f"timing.min_calls={t.min_calls} exceeds timing.max_calls={t.max_calls}; "
            "lower min_calls or raise max_calls"
        )
    if t.min_time_s > t.max_time_s:
        raise InputError(
            f"timing.min_time_s={t.min_time_s} exceeds timing.max_time_s={t.max_time_s}; "
            "lower min_time_s or raise max_time_s"
        )
    if t.target_ci_pct <= 0:
        raise InputError(f"timing.target_ci_pct={t.target_ci_pct} must be > 0, e.g. 2.0")
    if config.timeout_s <= 0:
        raise InputError(f"timeout_s={config.timeout_s} must be > 0 seconds, e.g. timeout_s=1800")
    if config.memory_limit_mib is not None and config.memory_limit_mib <= 0:
        raise InputError(
            f"memory_limit_mib={config.memory_limit_mib} must be > 0 MiB, or null for no cap"
        )
    if config.lock and not config.lock_dir.startswith("/"):
        raise InputError(
            f"lock_dir={config.lock_dir} must be an absolute path, the same for every sweep on "
            "this host (e.g. lock_dir=/tmp/sweeper-locks), or set lock=false"
        )
    fw = config.framework
    if isinstance(fw, TfConfig) and fw.eager_mode and fw.use_xla:
        raise InputError(
            "framework.eager_mode=true and framework.use_xla=true exclude each other: XLA "
            "compiles a graph; set one of them to false"
        )
    if isinstance(fw, PtConfig) and fw.torchscript and config.training:
        raise InputError(
            "framework.torchscript=true traces the model for inference only; set training=false "
            "or framework.torchscript=false"
        )


def model_label(model: ModelConfig, overrides: Sequence[str]) -> str:
    """The model's name, plus the model keys the overrides changed, e.g. bert-base[hidden_size=384].

    A user who sets ``model.name`` gets exactly that name.
    """
    changed = {}
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or not key.startswith("model."):
            continue
        key = key[len("model.") :]
        if key == "name":
            return model.name
        changed[key] = value
    if not changed:
        return model.name
    return f"{model.name}[{','.join(f'{k}={v}' for k, v in sorted(changed.items()))}]"


def _digest(data: Mapping[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def config_identity(config_dict: Mapping[str, Any]) -> str:
    """A stable hash of what a cell measures: equal hashes mean the same measurement."""
    return _digest({k: v for k, v in config_dict.items() if k not in NOT_PART_OF_IDENTITY})


def make_job(config_dict: Mapping[str, Any], overrides: Sequence[str]) -> Job:
    """A Job from the resolved config as plain data and the job's Hydra overrides."""
    config = typed_config(config_dict)
    cell = Cell(
        model=model_label(config.model, overrides),
        framework=config.framework.name.value,
        device=config.device.name.value,
        batch_size=config.batch,
        sequence_length=config.seq,
    )
    return Job(
        config=config,
        config_dict=dict(config_dict),
        cell=cell,
        overrides=list(overrides),
        identity=config_identity(config_dict),
    )


def job_from_config(cfg: DictConfig, overrides: Sequence[str]) -> Job:
    """The typed Job of a composed config; its ``hydra`` node, if any, is not part of the job."""
    job_keys = [key for key in cfg if key != "hydra"]
    data = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, job_keys), resolve=True, enum_to_str=True, throw_on_missing=True
    )
    return make_job(data, overrides)


def cell_problem(job: Job) -> Optional[tuple]:
    """(status, reason) for a cell that cannot run as configured, found without building it."""
    config = job.config
    model = config.model
    limit = model.max_positions()
    if limit is not None and config.seq > limit:
        return (
            Status.skipped,
            f"seq={config.seq} exceeds the {limit} positions of model {job.cell.model}; "
            "lower seq or raise the model's max positions "
            f"(e.g. model.{_positions_key(model)}={config.seq})",
        )
    problem = model.head_problem()
    if problem:
        return Status.error, f"model {job.cell.model}: {problem}"
    if isinstance(config.framework, PtConfig) and config.framework.fp16:
        if config.device.name is not Device.cuda:
            return (
                Status.error,
                f"framework.fp16=true needs device=cuda (device={config.device.name.value}): "
                "PyTorch's half-precision kernels are GPU kernels; set framework.fp16=false or "
                "device=cuda",
            )
    return None


def _positions_key(model: ModelConfig) -> str:
    for key in ("max_position_embeddings", "n_positions"):
        if hasattr(model, key):
            return key
    return "max_position_embeddings"
