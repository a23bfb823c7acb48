"""Every config option composes into a typed Job; labels, identity and cell checks."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from sweeper.config import CONF_DIR
from sweeper.config.job import (
    InputError,
    cell_problem,
    config_identity,
    job_from_config,
    model_label,
)
from sweeper.config.schema import MODEL_OWN_KEYS, ModelConfig, PtConfig, TfConfig

MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in (Path(CONF_DIR) / "sweep").glob("*.yaml"))


def test_presets_required_by_the_product_exist():
    for name in (
        "bert_base",
        "bert_base_uncased",
        "bert_base_cased",
        "bert_large",
        "distilbert_base",
        "roberta_base",
        "gpt2",
        "t5_small",
        "bart_base",
    ):
        assert name in MODELS


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_model_framework_device_composes(compose_config, model, framework, device):
    extra = ["model.model_type=bert"] if model == "auto" else []  # auto names no type itself
    cfg = compose_config([f"model={model}", f"framework={framework}", f"device={device}", *extra])
    job = job_from_config(cfg, extra)
    assert isinstance(job.config.model, ModelConfig)
    assert job.config.model.model_type == cfg.model.model_type
    assert job.config.model.config == {
        k: v for k, v in cfg.model.items() if k not in MODEL_OWN_KEYS
    }
    assert job.cell.framework == framework and job.cell.device == device
    assert isinstance(job.config.framework, PtConfig if framework == "pt" else TfConfig)


@pytest.mark.parametrize(
    "model, key, value",
    [
        ("bert_base", "hidden_size", 768),
        ("bert_base_uncased", "vocab_size", 30522),
        ("bert_base_cased", "vocab_size", 28996),
        ("bert_384_hid", "hidden_size", 384),
        ("bert_6_lay", "num_hidden_layers", 6),
        ("bert_large", "num_hidden_layers", 24),
        ("bert_large", "hidden_size", 1024),
        ("distilbert_base", "n_layers", 6),
        ("roberta_base", "vocab_size", 50265),
        ("gpt2", "n_positions", 1024),
        ("t5_small", "d_model", 512),
        ("t5_small", "num_decoder_layers", 6),
        ("bart_base", "encoder_layers", 6),
        ("smollm_135m", "num_key_value_heads", 3),
    ],
)
def test_presets_carry_published_hyperparameters(compose_config, model, key, value):
    """Read from the config transformers builds from the preset: what the worker gets."""
    from sweeper.config.model import build_config

    job = job_from_config(compose_config([f"model={model}"]), [])
    assert getattr(build_config(job.config.model), key) == value


@pytest.mark.parametrize(
    "overrides",
    [
        ["framework=pt", "framework.torchscript=true"],
        ["framework=pt", "framework.fp16=true", "device=cuda"],
        ["framework=tf", "framework.eager_mode=true"],
        ["framework=tf", "framework.use_xla=true"],
        ["training=true", "inference=false"],
        ["speed=false"],
        ["memory=false"],
        ["only_pretrain_model=true", "model.architecture=BertForMaskedLM"],
        ["timing.min_calls=10", "timing.max_time_s=5", "timing.target_ci_pct=1"],
        ["timeout_s=60", "force=true", "seed=3", "memory_limit_mib=4096"],
        ["model.hidden_size=384", "model.num_hidden_layers=6"],
    ],
)
def test_every_option_composes(compose_config, overrides):
    job = job_from_config(compose_config(overrides), overrides)
    typed = OmegaConf.structured(job.config)
    for override in overrides:
        key, value = override.split("=")
        if key in ("framework", "device"):  # a group choice: the option's name
            key += ".name"
        elif key.startswith("model.") and key[len("model.") :] not in MODEL_OWN_KEYS:
            key = "model.config." + key[len("model.") :]  # a key of the transformers config
        node = OmegaConf.select(typed, key)
        node = node.value if isinstance(node, Enum) else node
        assert node == yaml.safe_load(value), override


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_presets_compose_as_multiruns(compose_config, sweep):
    cfg = compose_config([f"sweep={sweep}"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = cfg.hydra.sweeper.params
    assert str(params.batch) == "8" and params.seq == "8,32,128,512"
    header = (Path(CONF_DIR) / "sweep" / f"{sweep}.yaml").read_text().splitlines()
    assert header[0] == "# @package _global_"
    assert any(f"python -m sweeper sweep={sweep}" in line for line in header)


def test_seed_custom_configs_sweeps_the_three_seed_models(compose_config):
    cfg = compose_config(["sweep=seed_custom_configs"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.model == "bert_base,bert_384_hid,bert_6_lay"


def test_label_shows_overridden_model_keys_sorted():
    bert = ModelConfig(name="bert-base", model_type="bert")
    assert model_label(bert, []) == "bert-base"
    assert model_label(bert, ["seq=8", "batch=2"]) == "bert-base"
    assert model_label(bert, ["model.hidden_size=384"]) == "bert-base[hidden_size=384]"
    assert (
        model_label(bert, ["model.num_hidden_layers=6", "seq=8", "model.hidden_size=384"])
        == "bert-base[hidden_size=384,num_hidden_layers=6]"
    )


def test_label_is_the_users_name_when_model_name_is_set():
    bert = ModelConfig(name="mine", model_type="bert")
    assert model_label(bert, ["model.hidden_size=384", "model.name=mine"]) == "mine"


def test_label_in_a_composed_job(compose_config):
    overrides = ["model=bert_base", "model.hidden_size=384"]
    assert job_from_config(compose_config(overrides), overrides).cell.model == (
        "bert-base[hidden_size=384]"
    )


def test_identity_ignores_how_the_sweep_runs_but_not_what_it_measures(compose_config):
    base = OmegaConf.to_container(compose_config([]), resolve=True, enum_to_str=True)
    same = dict(base, force=True, timeout_s=5)
    other = dict(base, seq=512)
    assert config_identity(base) == config_identity(same)
    assert config_identity(base) != config_identity(other)


@pytest.mark.parametrize(
    "overrides, status, message",
    [
        (
            ["seq=1024"],
            "skipped",
            "seq=1024 exceeds the 512 positions of model bert-base; lower seq or raise the "
            "model's max positions (e.g. model.max_position_embeddings=1024)",
        ),
        (
            ["model=roberta_base", "seq=513"],
            "skipped",
            "seq=513 exceeds the 512 positions of model roberta-base",
        ),
        (["model=gpt2", "seq=2048"], "skipped", "(e.g. model.max_position_embeddings=2048)"),
        (
            ["model=roberta_base", "seq=600"],
            "skipped",
            "(e.g. model.max_position_embeddings=602)",  # RoBERTa's positions start at 2
        ),
        (
            ["model.hidden_size=100"],
            "error",
            "hidden_size=100 is not divisible by num_attention_heads=12",
        ),
        (["framework.fp16=true"], "error", "framework.fp16=true needs device=cuda (device=cpu)"),
    ],
)
def test_cell_problems_found_without_building_the_model(compose_config, overrides, status, message):
    job = job_from_config(compose_config(overrides), overrides)
    problem = cell_problem(job)
    assert problem is not None and problem[0] == status
    assert message in problem[1]


def test_t5_has_no_position_limit(compose_config):
    job = job_from_config(compose_config(["model=t5_small", "seq=4096"]), [])
    assert cell_problem(job) is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["batch=0"], "batch=0 must be a positive integer, e.g. batch=8"),
        (["seq=-8"], "seq=-8 must be a positive integer, e.g. seq=8"),
        (["inference=false"], "inference=false and training=false leave nothing to measure"),
        (["speed=false", "memory=false"], "speed=false and memory=false leave nothing"),
        (
            ["framework=tf", "framework.eager_mode=true", "framework.use_xla=true"],
            "framework.eager_mode=true and framework.use_xla=true exclude each other",
        ),
        (
            ["framework.torchscript=true", "training=true"],
            "framework.torchscript=true traces the model for inference only",
        ),
        (
            ["timing.min_calls=10", "timing.max_calls=5"],
            "timing.min_calls=10 exceeds timing.max_calls=5",
        ),
        (["timeout_s=0"], "timeout_s=0"),
        (["memory_limit_mib=0"], "memory_limit_mib=0 must be > 0 MiB"),
        (
            ["timeout_s=inf"],
            "timeout_s=inf is not a finite number: a cell is stopped after this many seconds; "
            "give a finite number, e.g. timeout_s=86400 for a day",
        ),
        (["timing.max_time_s=inf"], "timing.max_time_s=inf is not a finite number"),
        (["timing.target_ci_pct=nan"], "timing.target_ci_pct=nan is not a finite number"),
        (["model.layer_norm_eps=-inf"], "model.layer_norm_eps=-inf is not a finite number"),
    ],
)
def test_bad_values_are_refused_with_the_fix(compose_config, overrides, message):
    with pytest.raises(InputError) as info:
        job_from_config(compose_config(overrides), overrides)
    assert message in str(info.value)


def test_job_folder_names_stay_readable_and_bounded():
    from sweeper.engine.app import MAX_DIRNAME, cell_dirname

    assert cell_dirname("batch=8,seq=128") == "batch=8,seq=128"
    assert cell_dirname("") == "default"
    assert cell_dirname("model.architecture=a/b") == "model.architecture=a_b"
    long = ",".join(f"model.key_{i}={i}" for i in range(40))
    short = cell_dirname(long)
    assert len(short) == MAX_DIRNAME and short.startswith("model.key_0=0,")
    assert cell_dirname(long) == short  # deterministic: a rerun finds the same folder
    assert cell_dirname(long + "1") != short
