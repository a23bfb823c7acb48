"""Any model a user has in mind (issue 10): canonical keys on every family, keys checked against
transformers' own config class, model=auto, model.pretrained, heads and inputs derived from
transformers, and (slow) more than twenty text model types running tiny in both frameworks."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from sweeper.config import catalog
from sweeper.config.job import InputError, cell_problem, config_identity, job_from_config
from sweeper.config.model import build_config, positions_limit, resolve, shape_problem
from sweeper.config.problems import UnknownKeyError
from sweeper.engine.app import hydra_argv
from tests.helpers import REPO, records, run_sweeper, sweeper_env


def make_job(compose_config, overrides, searchpath=None):
    extra = [f"hydra.searchpath=[file://{searchpath}]"] if searchpath else []
    return job_from_config(compose_config([*extra, *overrides]), overrides)


def built(compose_config, overrides, searchpath=None):
    """The transformers config object the worker will build, and the job."""
    job = make_job(compose_config, overrides, searchpath)
    return build_config(job.config.model), job


# ------------------------------------------------------------------------------------------------
# Canonical keys


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=gpt2", "model.hidden_size=384"], {"n_embd": 384, "n_head": 12}),
        # DistilBERT: hidden_size is dim; hidden_dim (the FFN size) is left alone.
        (["model=distilbert_base", "model.hidden_size=384"], {"dim": 384, "hidden_dim": 3072}),
        (
            ["model=t5_small", "model.hidden_size=384", "model.num_hidden_layers=2"],
            {"d_model": 384, "num_layers": 2, "num_decoder_layers": 2, "d_kv": 64},
        ),
        # BART: num_hidden_layers is set from encoder_layers in BartConfig (found by probing the
        # class); an encoder_* key sets its decoder_* twin too.
        (
            ["model=bart_base", "model.num_hidden_layers=2", "model.num_attention_heads=4"],
            {
                "encoder_layers": 2,
                "decoder_layers": 2,
                "encoder_attention_heads": 4,
                "decoder_attention_heads": 4,
            },
        ),
        # ... unless the decoder's own key is given: the key typed on the command line wins.
        (
            ["model=bart_base", "model.num_hidden_layers=2", "model.decoder_layers=3"],
            {"encoder_layers": 2, "decoder_layers": 3},
        ),
        (["model=gpt2", "model.max_position_embeddings=2048"], {"n_positions": 2048}),
        (["model=roberta_base", "model.num_hidden_layers=3"], {"num_hidden_layers": 3}),
    ],
)
def test_canonical_keys_set_the_family_key(compose_config, overrides, expected):
    hf_config, job = built(compose_config, overrides)
    assert {key: getattr(hf_config, key) for key in expected} == expected
    canonical = overrides[1].split("=")[0][len("model.") :]
    assert canonical not in job.config.model.config or canonical in expected  # stored resolved


def test_the_label_keeps_the_name_typed_and_the_measurement_is_the_same(compose_config):
    alias = make_job(compose_config, ["model=gpt2", "model.hidden_size=384"])
    own = make_job(compose_config, ["model=gpt2", "model.n_embd=384"])
    assert alias.cell.model == "gpt2[hidden_size=384]" and own.cell.model == "gpt2[n_embd=384]"
    assert alias.config_dict["model"] == own.config_dict["model"]
    assert config_identity(alias.config_dict) == config_identity(own.config_dict)


def test_an_alias_and_its_key_both_on_the_command_line_are_refused(compose_config):
    with pytest.raises(InputError) as info:
        make_job(compose_config, ["model=gpt2", "model.hidden_size=384", "model.n_embd=512"])
    assert str(info.value) == (
        "model.hidden_size=384 and model.n_embd=512 set the same key of GPT2Config (hidden_size "
        "is its alias of n_embd); give one of them"
    )


def test_a_user_preset_in_a_config_dir_with_an_alias(compose_config, tmp_path):
    """--config-dir presets extend ours; their alias beats the preset's key, a key given on the
    command line beats their alias, and unknown keys in them are refused like typed ones."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "gpt2_384.yaml").write_text(
        "defaults: [gpt2, _self_]\nname: gpt2-384\nhidden_size: 384\n"
    )
    (tmp_path / "model" / "bert_typo.yaml").write_text(
        "defaults: [bert_base, _self_]\nname: bert-typo\nhiden_size: 384\n"
    )
    hf_config, job = built(compose_config, ["model=gpt2_384"], searchpath=tmp_path)
    assert hf_config.n_embd == 384 and job.cell.model == "gpt2-384"
    hf_config, job = built(compose_config, ["model=gpt2_384", "model.n_embd=512"], tmp_path)
    assert hf_config.n_embd == 512 and job.cell.model == "gpt2-384[n_embd=512]"
    with pytest.raises(UnknownKeyError, match="unknown key model.hiden_size: BertConfig"):
        make_job(compose_config, ["model=bert_typo"], searchpath=tmp_path)


@pytest.mark.parametrize("multirun", [[], ["-m"]], ids=["run", "multirun"])
def test_keys_of_a_config_dir_preset_are_checked_before_any_job(tmp_path, sweep_dir, multirun):
    conf = tmp_path / "paper" / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "bert_typo.yaml").write_text(
        "defaults: [bert_base, _self_]\nname: bert-typo\nhiden_size: 384\n"
    )
    proc = run_sweeper(
        [
            "--config-dir",
            str(conf),
            "model=bert_typo",
            f"hydra.sweep.dir={sweep_dir}",
            f"hydra.run.dir={sweep_dir}",
            *multirun,
        ],
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "sweeper: unknown key model.hiden_size: BertConfig (model_type=bert) has no key "
        "'hiden_size'.\nDid you mean model.hidden_size?\n"
    ) in proc.stderr
    assert not list(sweep_dir.rglob("record.json")) and not list(sweep_dir.rglob("worker-*"))


def test_did_you_mean_draws_on_the_class_own_names_only(compose_config):
    with pytest.raises(UnknownKeyError) as info:
        make_job(compose_config, ["model=distilbert_base", "model.hiden_size=384"])
    assert "Did you mean model.hidden_size (an alias of dim)?" in str(info.value)
    # GPT-2's name for the hidden size is no misspelling of any DistilBERT key: no suggestion
    # (difflib's default cutoff would offer n_heads).
    with pytest.raises(UnknownKeyError) as info:
        make_job(compose_config, ["model=distilbert_base", "model.n_embd=384"])
    assert "Did you mean" not in str(info.value)
    assert str(info.value).startswith(
        "unknown key model.n_embd: DistilBertConfig (model_type=distilbert) has no key 'n_embd'."
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.architectures=[BertModel]"],
            "model.architectures is set by sweeper; use model.architecture=NAME (one head class)",
        ),
        (["model.torchscript=true"], "use framework.torchscript=true"),
        (
            # The class checks its own values: GPT-Neo's attention_types must cover the layers.
            ["model=auto", "model.model_type=gpt_neo", "model.num_hidden_layers=2"],
            "GPTNeoConfig (model_type=gpt_neo) refused the model's values: ValueError: "
            "Configuration for convolutional module is incorrect.",
        ),
        (
            ["model=auto", "model.model_type=gemma3", "model.text_config.hiden_size=32"],
            "unknown key model.text_config.hiden_size: Gemma3TextConfig (model_type=gemma3_text) "
            "has "
            "no key 'hiden_size'.\nDid you mean model.text_config.hidden_size?",
        ),
        (["model.name=[a,b]"], "model.name=['a', 'b'] must be a name (text) or null"),
    ],
)
def test_model_keys_refused_with_the_fix(compose_config, overrides, message):
    with pytest.raises(InputError) as info:
        make_job(compose_config, overrides)
    assert message in str(info.value)


def test_nested_config_keys_reach_the_sub_config(compose_config):
    hf_config, _ = built(
        compose_config,
        ["model=auto", "model.model_type=gemma3", "model.text_config.hidden_size=64"],
    )
    assert hf_config.text_config.hidden_size == 64
    # Llava's text model is any model type (AutoConfig): checked against the one it builds.
    llava = ["model=auto", "model.model_type=llava"]
    hf_config, _ = built(compose_config, [*llava, "model.text_config.num_hidden_layers=2"])
    assert (type(hf_config.text_config).__name__, hf_config.text_config.num_hidden_layers) == (
        "LlamaConfig",
        2,
    )
    hf_config, _ = built(
        compose_config,
        [*llava, "model.text_config.model_type=qwen2", "model.text_config.hidden_size=64"],
    )
    assert (type(hf_config.text_config).__name__, hf_config.text_config.hidden_size) == (
        "Qwen2Config",
        64,
    )
    with pytest.raises(UnknownKeyError, match="unknown key model.text_config.n_embd: LlamaConfig"):
        make_job(compose_config, [*llava, "model.text_config.n_embd=64"])
    # Mask2Former builds its backbone from a dict only with a model_type: the one checked against.
    mask2former = [
        "model=auto",
        "model.model_type=mask2former",
        "model.backbone_config.embed_dim=48",
    ]
    hf_config, job = built(compose_config, mask2former)
    assert job.config.model.config["backbone_config"] == {"embed_dim": 48, "model_type": "swin"}
    assert (type(hf_config.backbone_config).__name__, hf_config.backbone_config.embed_dim) == (
        "SwinConfig",
        48,
    )


def test_every_model_type_resolves_or_is_refused_cleanly(monkeypatch):
    """model=auto model.model_type=T for all 421 types, with the class defaults and with a
    misspelt key: an answer or an InputError, never a traceback (DetrConfig's sub_configs is a
    property; EdgeTAM's default config would fetch a backbone from the Hub: offline here)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    refused = []
    for model_type in catalog.model_types():
        try:
            assert resolve({"model_type": model_type})["model_type"] == model_type
        except InputError:
            refused.append(model_type)
        with pytest.raises(UnknownKeyError, match="has no key 'no_such_key'"):
            resolve({"model_type": model_type, "no_such_key": 1})
    # Composite configs that need their parts named, and EdgeTAM's Hub backbone.
    assert sorted(refused) == [
        "edgetam",
        "edgetam_vision_model",
        "encoder-decoder",
        "musicgen",
        "musicgen_melody",
        "nougat",
        "rag",
        "speech-encoder-decoder",
        "vision-encoder-decoder",
        "vision-text-dual-encoder",
    ]


# ------------------------------------------------------------------------------------------------
# model=auto and model.pretrained


def test_auto_starts_from_the_class_defaults(compose_config):
    overrides = ["model=auto", "model.model_type=qwen2", "model.num_hidden_layers=2"]
    hf_config, job = built(compose_config, overrides)
    assert job.cell.model == "qwen2[num_hidden_layers=2]"
    assert job.config.model.config == {"num_hidden_layers": 2}
    defaults = catalog.config_class("qwen2")()
    assert hf_config.num_hidden_layers == 2
    assert (hf_config.hidden_size, hf_config.vocab_size) == (defaults.hidden_size, 151936)


def test_auto_without_a_model_type_or_with_a_wrong_one(compose_config):
    with pytest.raises(InputError, match="model.model_type is not set: name a model type"):
        make_job(compose_config, ["model=auto"])
    with pytest.raises(InputError) as info:
        make_job(compose_config, ["model=auto", "model.model_type=qwen9"])
    assert "model.model_type=qwen9 is not a model type of transformers 4.57" in str(info.value)
    assert "did you mean qwen3 or qwen2" in str(info.value)


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint folder as from save_pretrained: config.json only (weights are never read)."""
    folder = tmp_path / "my-gpt2"
    folder.mkdir()
    config = {
        "_name_or_path": "somewhere/my-gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_embd": 64,
        "n_head": 4,
        "n_layer": 3,
        "n_positions": 256,
        "vocab_size": 5000,
        "transformers_version": "4.40.0",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_pretrained_folder_with_overrides_on_top(compose_config, checkpoint):
    overrides = ["model=auto", f"model.pretrained={checkpoint}", "model.num_hidden_layers=2"]
    hf_config, job = built(compose_config, overrides)
    assert job.cell.model == "my-gpt2[num_hidden_layers=2]"
    model = job.config.model
    assert (model.model_type, model.architecture) == ("gpt2", "GPT2LMHeadModel")  # as the old tool
    assert (hf_config.n_embd, hf_config.n_head, hf_config.n_layer, hf_config.vocab_size) == (
        64,
        4,
        2,
        5000,
    )
    # The record's config holds the checkpoint's values (resume compares them), not its file facts.
    assert "transformers_version" not in model.config and "_name_or_path" not in model.config
    assert job.config_dict["model"]["n_embd"] == 64
    assert cell_problem(make_job(compose_config, [*overrides, "seq=512"]))[1].startswith(
        "seq=512 exceeds the 256 positions of model my-gpt2[num_hidden_layers=2]"
    )
    # A config.json file works too.
    _, job = built(compose_config, ["model=auto", f"model.pretrained={checkpoint}/config.json"])
    assert job.config.model.config["n_layer"] == 3


def test_pretrained_nested_config_keys_go_on_top_key_by_key(compose_config, tmp_path):
    config = {"model_type": "gemma3", "text_config": {"hidden_size": 96, "num_hidden_layers": 3}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    overrides = [
        "model=auto",
        f"model.pretrained={tmp_path}",
        "model.text_config.num_hidden_layers=2",
    ]
    hf_config, _ = built(compose_config, overrides)
    assert (hf_config.text_config.hidden_size, hf_config.text_config.num_hidden_layers) == (96, 2)


def test_pretrained_refusals(compose_config, checkpoint, tmp_path):
    with pytest.raises(InputError) as info:
        make_job(compose_config, ["model=auto", f"model.pretrained={tmp_path}"])
    assert f"model.pretrained={tmp_path}: the folder has no config.json" in str(info.value)
    with pytest.raises(InputError, match="says model_type=gpt2; drop model.model_type"):
        make_job(compose_config, ["model=bert_base", f"model.pretrained={checkpoint}"])


def test_a_hub_id_not_in_the_cache_offline_names_the_id_and_the_cache(tmp_path, sweep_dir):
    env = dict(sweeper_env(), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeper",
            "model=auto",
            "model.pretrained=someone/some-model",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "sweeper: bad input: model.pretrained=someone/some-model: no folder 'someone/some-model' "
        "here, and the Hub id someone/some-model has no config.json in the Hub cache "
        f"({tmp_path / 'hf' / 'hub'}) nor could one be downloaded"
    ) in proc.stderr
    assert "huggingface-cli download someone/some-model config.json" in proc.stderr


# ------------------------------------------------------------------------------------------------
# Checks through the aliases


@pytest.mark.parametrize(
    "overrides, problem",
    [
        (
            ["model=gpt2", "model.hidden_size=100"],
            "hidden_size=100 (n_embd) is not divisible by num_attention_heads=12 (n_head); "
            "choose hidden_size as a multiple of num_attention_heads (e.g. model.hidden_size=96)",
        ),
        (
            ["model=bart_base", "model.decoder_attention_heads=7"],
            "hidden_size=768 (d_model) is not divisible by decoder_attention_heads=7",
        ),
        (["model=t5_small", "model.hidden_size=100"], None),  # heads sized by d_kv, not d_model
        (
            ["model=smollm_135m", "model.num_key_value_heads=2"],
            "num_attention_heads=9 is not divisible by num_key_value_heads=2",
        ),
        (["model=auto", "model.model_type=llama", "model.num_key_value_heads=8"], None),
    ],
)
def test_head_checks_read_every_family_through_its_aliases(compose_config, overrides, problem):
    job = make_job(compose_config, overrides)
    found = shape_problem(job.config.model)
    assert found == problem if problem is None else problem in found


@pytest.mark.parametrize(
    "overrides, limit",
    [
        (["model=gpt2"], (1024, 0)),
        (["model=bert_base"], (512, 0)),
        (["model=roberta_base"], (512, 2)),  # positions start after pad_token_id=1
        (["model=bart_base"], (1024, 0)),  # BART's offset is inside its table
        (["model=t5_small"], None),  # relative positions
        (["model=auto", "model.model_type=xlnet"], None),  # XLNetConfig says -1: no limit
    ],
)
def test_position_limits(compose_config, overrides, limit):
    assert positions_limit(make_job(compose_config, overrides).config.model) == limit


# ------------------------------------------------------------------------------------------------
# Heads and inputs, derived from transformers (no framework: fake classes, real tables)


def _job(compose_config, overrides):
    return make_job(compose_config, overrides).config


class _Head:
    config_class = None

    def __init__(self, config):
        self.config = config


def fake_transformers(**classes):
    from transformers import AutoConfig

    return SimpleNamespace(AutoConfig=AutoConfig, __version__="4.57", **classes)


def test_default_classes_and_inputs(compose_config):
    from transformers import BartConfig, BertConfig

    from sweeper.frameworks import plan_model
    from sweeper.record import Mode

    class BertModel(_Head):
        config_class = BertConfig

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
            pass

    class BertForMaskedLM(BertModel):
        def forward(self, input_ids=None, token_type_ids=None, labels=None):
            pass

    class BartForConditionalGeneration(_Head):
        config_class = BartConfig

        def forward(self, input_ids=None, decoder_input_ids=None, labels=None):
            pass

    fake = fake_transformers(
        BertModel=BertModel,
        BertForMaskedLM=BertForMaskedLM,
        BartForConditionalGeneration=BartForConditionalGeneration,
    )
    ids = SimpleNamespace(shape=(2, 8))
    plan = plan_model(fake, Mode.inference, _job(compose_config, []), tf=False)
    assert plan.cls is BertModel and plan.vocab_size == 30522
    assert plan.arguments(ids, lambda shape: shape) == {"input_ids": ids}  # no token_type_ids
    plan = plan_model(fake, Mode.training, _job(compose_config, []), tf=False)
    assert plan.cls is BertForMaskedLM
    assert plan.arguments(ids, lambda shape: shape) == {"input_ids": ids, "labels": ids}
    bart = _job(compose_config, ["model=bart_base"])
    plan = plan_model(fake, Mode.training, bart, tf=False)
    assert plan.cls is BartForConditionalGeneration
    assert plan.arguments(ids, lambda shape: shape) == {
        "input_ids": ids,
        "decoder_input_ids": ids,
        "labels": ids,
    }


def test_classifier_heads_get_class_labels(compose_config):
    from transformers import BertConfig

    from sweeper.frameworks import plan_model
    from sweeper.record import Mode

    class BertForQuestionAnswering(_Head):
        config_class = BertConfig

        def forward(self, input_ids=None, start_positions=None, end_positions=None):
            pass

    class BertForTokenClassification(_Head):
        config_class = BertConfig

        def forward(self, input_ids=None, labels=None):
            pass

    fake = fake_transformers(
        BertForQuestionAnswering=BertForQuestionAnswering,
        BertForTokenClassification=BertForTokenClassification,
    )
    ids, zeros = SimpleNamespace(shape=(2, 8)), (lambda shape: ("zeros", shape))
    qa = _job(compose_config, ["model.architecture=BertForQuestionAnswering"])
    plan = plan_model(fake, Mode.training, qa, tf=False)
    assert plan.arguments(ids, zeros) == {
        "input_ids": ids,
        "start_positions": ("zeros", (2,)),
        "end_positions": ("zeros", (2,)),
    }
    token = _job(compose_config, ["model.architecture=TFBertForTokenClassification"])
    plan = plan_model(fake, Mode.training, token, tf=False)  # the TF name picks the PT class
    assert plan.cls is BertForTokenClassification
    assert plan.arguments(ids, zeros) == {"input_ids": ids, "labels": ("zeros", (2, 8))}


def test_a_mode_a_class_cannot_run_is_a_cell_error_saying_why(compose_config):
    from transformers import BertConfig, GPT2Config

    from sweeper.frameworks import CellError, plan_model
    from sweeper.record import Mode

    class BertModel(_Head):  # as a vision model would be: no token ids
        config_class = BertConfig

        def forward(self, pixel_values, output_attentions=None):
            pass

    class BertForMaskedLM(_Head):
        config_class = BertConfig

        def forward(self, input_ids, bbox, labels=None):
            pass

    class BertForPreTraining(_Head):
        config_class = GPT2Config  # a class of another family: the worker's own check

        def forward(self, input_ids=None):
            pass

    class BertForNextSentencePrediction(_Head):
        config_class = BertConfig

        def forward(self, input_ids=None, labels=None):
            pass

    fake = fake_transformers(
        BertModel=BertModel,
        BertForMaskedLM=BertForMaskedLM,
        BertForPreTraining=BertForPreTraining,
        BertForNextSentencePrediction=BertForNextSentencePrediction,
    )
    bert = _job(compose_config, [])
    with pytest.raises(CellError) as info:
        plan_model(fake, Mode.inference, bert, tf=False)
    assert str(info.value).startswith(
        "BertModel takes no input_ids (it takes pixel_values, output_attentions, ...): sweeper "
        "feeds token ids of batch x seq, so it benchmarks text models; model_type=bert is not one"
    )
    with pytest.raises(CellError, match="BertForMaskedLM needs bbox, which sweeper does not make"):
        plan_model(fake, Mode.training, bert, tf=False)
    wrong = _job(compose_config, ["model.architecture=BertForPreTraining"])
    with pytest.raises(CellError) as info:
        plan_model(fake, Mode.inference, wrong, tf=False)
    assert "BertForPreTraining takes a GPT2Config, not the BertConfig of model_type=bert" in str(
        info.value
    )
    assert "head classes of bert: BertForMaskedLM," in str(info.value)
    nsp = _job(compose_config, ["model.architecture=BertForNextSentencePrediction"])
    with pytest.raises(CellError, match="BertForNextSentencePrediction is no head sweeper can"):
        plan_model(fake, Mode.training, nsp, tf=False)
    llama_tf = _job(compose_config, ["model=smollm_135m", "framework=tf"])
    with pytest.raises(CellError) as info:
        plan_model(fake, Mode.inference, llama_tf, tf=True)
    assert str(info.value) == (
        "transformers 4.57.6 has no TensorFlow base-model class for model_type=llama (model "
        "smollm-135m); use framework=pt"
    )


def test_describe_config_adds_the_canonical_names():
    from transformers import GPT2Config

    from sweeper.frameworks import describe_config

    described = describe_config(GPT2Config(n_embd=64, n_layer=2, n_head=4))
    assert (described["n_embd"], described["hidden_size"]) == (64, 64)
    assert (described["num_hidden_layers"], described["num_attention_heads"]) == (2, 4)
    assert described["max_position_embeddings"] == described["n_positions"] == 1024
    json.dumps(described, allow_nan=False)  # goes into the record as it is


# ------------------------------------------------------------------------------------------------
# The Hydra process: transformers' configuration modules only, quietly; --info models; -m


def test_making_jobs_imports_no_framework_and_prints_no_advice():
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from sweeper.config import CONF_DIR, schema\n"
        "from sweeper.config.job import job_from_config\n"
        "schema.register()\n"
        "with initialize_config_dir(config_dir=CONF_DIR, version_base='1.3'):\n"
        "    cfg = compose(config_name='config', overrides=['model=bart_base'])\n"
        "job = job_from_config(cfg, [])\n"
        "print(job.cell.model, sorted(m for m in ('torch', 'tensorflow', 'keras', 'tf_keras', "
        "'jax', 'flax') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=sweeper_env(), cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "bart-base []\n"
    assert "None of PyTorch" not in proc.stderr and "USE_TORCH" not in proc.stderr


def test_info_models_lists_every_type_and_its_classes():
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper", "--info", "models"],
        capture_output=True,
        text=True,
        env=sweeper_env(),
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    types = catalog.model_types()
    assert len(types) > 400 and lines[0].startswith("Model types of transformers 4.57")
    rows = {line.split()[0]: line.split()[1:] for line in lines[5:]}
    assert set(rows) == set(types)
    assert rows["bert"] == ["BertConfig", "BertModel", "TFBertModel"]
    assert rows["llama"] == ["LlamaConfig", "LlamaModel", "-"]
    assert rows["gpt2"] == ["GPT2Config", "GPT2Model", "TFGPT2Model"]
    assert "None of PyTorch" not in proc.stderr


def test_multirun_flag_anywhere():
    assert hydra_argv(["seq=8", "-m", "batch=1"]) == ["-m", "seq=8", "batch=1"]
    assert hydra_argv(["seq=8", "batch=1"]) == ["seq=8", "batch=1"]
    assert hydra_argv(["--multirun", "seq=8"]) == ["--multirun", "seq=8"]
    assert hydra_argv(["--config-dir", "d", "sweep=x", "-m", "seq=8"]) == [
        "-m",
        "--config-dir",
        "d",
        "sweep=x",
        "seq=8",
    ]


# ------------------------------------------------------------------------------------------------
# Proof of coverage (make test-slow): more than twenty text model types, tiny through the
# canonical keys, inference and training, PyTorch and (where transformers has one) TensorFlow.

ENCODERS = ["bert", "roberta", "xlm-roberta", "albert", "electra", "deberta-v2", "distilbert"]
DECODERS = ["gpt2", "gptj", "opt", "llama", "phi", "falcon", "bloom", "gpt_neox"]
ENCODER_DECODERS = ["t5", "bart", "mbart", "pegasus"]
# Grouped-query families whose default key/value heads (8, 32, 16) cannot divide 2 heads.
GROUPED_QUERY = ["mistral", "qwen2", "gemma"]
TINY = [
    "model.hidden_size=128",  # 64 per head: GPT-J's rotary_dim=64 needs that much
    "model.num_hidden_layers=2",
    "model.num_attention_heads=2",
]


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_text_model_types_run_tiny_in_both_modes(tmp_path, framework):
    groups = [ENCODERS + DECODERS + ENCODER_DECODERS, GROUPED_QUERY]
    if framework == "tf":  # only the types transformers has a TensorFlow class for
        groups = [[t for t in g if catalog.base_class(t, "tf")] for g in groups]
        # Eager: the classes and inputs are under test here, not graph tracing (5-8 s a cell).
        options = ["framework=tf", "framework.eager_mode=true"]
    else:
        options = ["framework=pt"]
    assert len(groups[0]) + len(groups[1]) >= (22 if framework == "pt" else 15)
    found = {}
    for index, group in enumerate(groups):
        extra = ["model.num_key_value_heads=1"] if group is groups[1] else []
        sweep_dir = tmp_path / f"sweep{index}"
        proc = run_sweeper(
            [
                "model=auto",
                f"model.model_type={','.join(group)}",
                *TINY,
                *extra,
                *options,
                "training=true",
                "speed=false",  # the cold call and one more per mode: it runs, memory measured
                "batch=2",
                "seq=16",
                f"hydra.sweep.dir={sweep_dir}",
                "-m",
            ],
            cwd=tmp_path,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        found.update({r["config"]["model"]["model_type"]: r for r in records(sweep_dir)})
    assert sorted(found) == sorted(groups[0] + groups[1])
    kinds = {"encoder-decoder": 0, "decoder": 0, "encoder": 0}
    prefix = "TF" if framework == "tf" else ""
    for model_type, record in found.items():
        assert record["status"] == "ok", (model_type, record["error"])
        inference, training = record["results"]["inference"], record["results"]["training"]
        assert inference["model_class"] == prefix + catalog.base_class(model_type, "pt")
        assert training["model_class"] == catalog.training_class(model_type, framework)[0]
        for result in (inference, training):
            config = result["model_config"]
            assert (config["hidden_size"], config["num_hidden_layers"]) == (128, 2), model_type
            assert config["num_attention_heads"] == 2, model_type
            assert result["memory"]["peak_rss_mib"] > 0
        if inference["model_config"]["is_encoder_decoder"]:
            kinds["encoder-decoder"] += 1
        elif model_type in DECODERS + GROUPED_QUERY:
            kinds["decoder"] += 1
        else:
            kinds["encoder"] += 1
    assert min(kinds.values()) >= 3, kinds
