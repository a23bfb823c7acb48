"""Typed schemas of every config group, registered in Hydra's ConfigStore.

A misspelt key (``model.hiden_size=384``) or a wrong type (``batch=abc``) fails when Hydra composes
the config, before any job runs, because every node below is a closed dataclass.

Model presets in ``conf/model/`` pick their family's schema in their defaults list
(``- /schema/model/bert@_here_``). Family schemas use the key names of the transformers config
class they feed (``BertConfig(hidden_size=...)``, ``GPT2Config(n_embd=...)``), so a preset is the
published config written out, and every key is a plain, overridable value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Dict, Optional

from omegaconf import MISSING

__all__ = [
    "MODEL_SCHEMAS",
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


@dataclass
class ModelConfig:
    """Keys every model preset has; a family adds the keys of its transformers config class."""

    name: str = MISSING  # label in tables; overridden keys are appended unless you set model.name
    model_type: str = MISSING  # transformers' model_type: picks the config class (AutoConfig)
    # Head class to benchmark, e.g. BertForMaskedLM (the old tool's config.architectures[0]).
    # null: the bare model for inference, the model with an LM head for training.
    architecture: Optional[str] = None

    def hf_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for the transformers config class: every family key."""
        base = {f.name for f in fields(ModelConfig)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in base}

    def max_positions(self) -> Optional[int]:
        """Longest input the position embeddings allow; None when positions are relative."""
        return None

    def head_problem(self) -> Optional[str]:
        """Why the attention heads cannot split the hidden size, or None when they can."""
        return None


def _heads_divide(hidden_key: str, hidden: int, heads_key: str, heads: int) -> Optional[str]:
    if heads <= 0 or hidden % heads:
        return (
            f"{hidden_key}={hidden} is not divisible by {heads_key}={heads}; "
            f"choose {hidden_key} as a multiple of {heads_key} (e.g. {hidden_key}="
            f"{max(heads, 1) * max(1, round(hidden / max(heads, 1)))})"
        )
    return None


@dataclass
class BertModelConfig(ModelConfig):
    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072  # feed-forward inner size
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def max_positions(self) -> Optional[int]:
        return self.max_position_embeddings

    def head_problem(self) -> Optional[str]:
        return _heads_divide(
            "hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads
        )


@dataclass
class RobertaModelConfig(BertModelConfig):
    model_type: str = "roberta"
    vocab_size: int = 50265
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2

    def max_positions(self) -> Optional[int]:
        # RoBERTa numbers positions from pad_token_id + 1, so two slots are never used.
        return self.max_position_embeddings - self.pad_token_id - 1


@dataclass
class DistilBertModelConfig(ModelConfig):
    model_type: str = "distilbert"
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768  # hidden size
    hidden_dim: int = 3072  # feed-forward inner size
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"

    def max_positions(self) -> Optional[int]:
        return self.max_position_embeddings

    def head_problem(self) -> Optional[str]:
        return _heads_divide("dim", self.dim, "n_heads", self.n_heads)


@dataclass
class Gpt2ModelConfig(ModelConfig):
    model_type: str = "gpt2"
    vocab_size: int = 50257
    n_positions: int = 1024  # max positions
    n_embd: int = 768  # hidden size
    n_layer: int = 12
    n_head: int = 12
    n_inner: Optional[int] = None  # feed-forward inner size; null = 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5

    def max_positions(self) -> Optional[int]:
        return self.n_positions

    def head_problem(self) -> Optional[str]:
        return _heads_divide("n_embd", self.n_embd, "n_head", self.n_head)


@dataclass
class T5ModelConfig(ModelConfig):
    model_type: str = "t5"
    vocab_size: int = 32128
    d_model: int = 512  # hidden size
    d_kv: int = 64  # size of each head: heads need not divide d_model
    d_ff: int = 2048  # feed-forward inner size
    num_layers: int = 6  # encoder layers
    num_decoder_layers: Optional[int] = None  # null = num_layers
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    decoder_start_token_id: int = 0
    pad_token_id: int = 0
    eos_token_id: int = 1


@dataclass
class BartModelConfig(ModelConfig):
    model_type: str = "bart"
    vocab_size: int = 50265
    max_position_embeddings: int = 1024
    d_model: int = 768  # hidden size
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 12
    decoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    decoder_ffn_dim: int = 3072
    activation_function: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0

    def max_positions(self) -> Optional[int]:
        return self.max_position_embeddings

    def head_problem(self) -> Optional[str]:
        return _heads_divide(
            "d_model", self.d_model, "encoder_attention_heads", self.encoder_attention_heads
        ) or _heads_divide(
            "d_model", self.d_model, "decoder_attention_heads", self.decoder_attention_heads
        )


@dataclass
class LlamaModelConfig(ModelConfig):
    model_type: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32  # grouped-query attention: must divide num_attention_heads
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False

    def max_positions(self) -> Optional[int]:
        return self.max_position_embeddings

    def head_problem(self) -> Optional[str]:
        problem = _heads_divide(
            "hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads
        )
        if problem is None and (
            self.num_key_value_heads <= 0 or self.num_attention_heads % self.num_key_value_heads
        ):
            problem = (
                f"num_attention_heads={self.num_attention_heads} is not divisible by "
                f"num_key_value_heads={self.num_key_value_heads}; choose num_key_value_heads "
                "as a divisor of num_attention_heads"
            )
        return problem


MODEL_SCHEMAS: Dict[str, type] = {
    "bert": BertModelConfig,
    "roberta": RobertaModelConfig,
    "distilbert": DistilBertModelConfig,
    "gpt2": Gpt2ModelConfig,
    "t5": T5ModelConfig,
    "bart": BartModelConfig,
    "llama": LlamaModelConfig,
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

    model: Any = MISSING  # a family schema from MODEL_SCHEMAS, chosen by the model preset
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
    lock: bool = MISSING  # measure only while holding the host-wide device locks (run/lock.py)
    lock_dir: str = MISSING  # where those locks live: the same absolute folder for every sweep
    timing: TimingConfig = MISSING
    sweep_round: int = MISSING  # which pass over the sweep's cells a job is: set by the sweeper


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for family, schema in MODEL_SCHEMAS.items():
        cs.store(group="schema/model", name=family, node=schema)
    cs.store(group="schema/framework", name="pt", node=PtConfig)
    cs.store(group="schema/framework", name="tf", node=TfConfig)
    cs.store(group="schema/device", name="device", node=DeviceConfig)
