"""Bad input through the real command line: refused before any job runs, with the value and the
fix in the message (issue 4). Each message is pinned."""

from __future__ import annotations

import pytest

from tests.helpers import run_sweeper

CASES = [
    (
        ["model=bert_bse"],
        [
            "sweeper: In 'config': Could not find 'model/bert_bse'",
            "Available options in 'model':",
            "\tbert_base\n",
            "Choose one of these with model=NAME, or add model/bert_bse.yaml to conf/ or to a "
            "folder passed with --config-dir.",
        ],
    ),
    (
        ["framework=jax"],
        [
            "Could not find 'framework/jax'",
            "\tpt\n\ttf\n",
            "Choose one of these with framework=NAME.",
        ],
    ),
    (["device=tpu"], ["Could not find 'device/tpu'", "\tcpu\n\tcuda\n"]),
    (["sweep=nope"], ["Could not find 'sweep/nope'", "\tseed_bert_base\n"]),
    (
        ["model.hiden_size=384"],
        [
            "sweeper: unknown key model.hiden_size: BertConfig (model_type=bert) has no key "
            "'hiden_size'.",
            "Did you mean model.hidden_size?",
            "Keys of BertConfig: vocab_size, hidden_size, num_hidden_layers,",
        ],
    ),
    (
        # DistilBERT's hidden size is dim (alias hidden_size); hidden_dim is its FFN size.
        ["model=distilbert_base", "model.hiden_size=384", "-m"],
        [
            "sweeper: unknown key model.hiden_size: DistilBertConfig (model_type=distilbert) has "
            "no key 'hiden_size'.\nDid you mean model.hidden_size (an alias of dim)?\n",
        ],
    ),
    (
        ["model=bert_base", "model.architecture=GPT2LMHeadModel"],
        [
            "sweeper: bad input: model.architecture=GPT2LMHeadModel is a head class of gpt-sw3, "
            "gpt2, not of model_type=bert. Head classes of bert: BertForMaskedLM, "
            "BertForMultipleChoice, BertForNextSentencePrediction, BertForPreTraining, "
            "BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification, "
            "BertLMHeadModel, BertModel; or model.architecture=null",
        ],
    ),
    (
        ["model=auto", "-m"],
        ["sweeper: bad input: model.model_type is not set: name a model type (model=auto "],
    ),
    (
        ["model=auto", "model.model_type=qwen9"],
        ["sweeper: bad input: model.model_type=qwen9 is not a model type of transformers 4.57"],
    ),
    (
        ["worker_start=thread"],
        [
            "sweeper: bad value worker_start=thread: worker_start takes one of fork, spawn "
            "(Invalid value 'thread', expected one of [fork, spawn]). Give worker_start one of "
            "fork, spawn, e.g. worker_start=fork; a sweep lists values with commas: "
            "worker_start=fork,spawn."
        ],
    ),
    (
        ["training=maybe"],
        [
            "sweeper: bad value training=maybe: training takes true or false (Value 'maybe' is not "
            "a valid bool (type str)). Give training true or false, e.g. training=true; a sweep "
            "lists values with commas: training=false,true."
        ],
    ),
    (
        ["timing.max_call=3"],
        [
            "sweeper: unknown key timing.max_call: timing has no key 'max_call'.\n"
            "Did you mean timing.max_calls?\n",
            "Fix the spelling on the command line or in your sweep YAML.",
        ],
    ),
    (
        ["timeout_s=inf"],
        [
            "sweeper: bad input: timeout_s=inf is not a finite number: a cell is stopped after "
            "this many seconds; give a finite number, e.g. timeout_s=86400 for a day"
        ],
    ),
    (
        ["timing.max_time_s=inf", "-m"],
        ["sweeper: bad input: timing.max_time_s=inf is not a finite number: the cap on timed"],
    ),
    (
        ["timing.target_ci_pct=nan", "-m"],
        ["sweeper: bad input: timing.target_ci_pct=nan is not a finite number"],
    ),
    (
        ["sweep=seed_bert_base,seed_custom_configs", "-m"],
        [
            "sweeper: bad input: sweep=seed_bert_base,seed_custom_configs: one sweep preset per "
            "command (each preset is a whole sweep, read when the command starts); run them one "
            "after the other: python -m sweeper sweep=seed_bert_base; python -m sweeper "
            "sweep=seed_custom_configs"
        ],
    ),
    (
        # An override after -m is taken (Hydra's argparse alone would refuse it): here it is
        # checked like any other and refused for its value.
        ["seq=8", "-m", "batch=0"],
        ["sweeper: bad input: batch=0 must be a positive integer, e.g. batch=8 (in the job "],
    ),
    (
        ["batch=abc"],
        [
            "sweeper: bad value batch=abc: batch takes an integer (Value 'abc' of type 'str' "
            "could not be converted to Integer). Give batch an integer, e.g. batch=8; a sweep "
            "lists values with commas: batch=1,8."
        ],
    ),
    (["batch=0"], ["sweeper: bad input: batch=0 must be a positive integer, e.g. batch=8"]),
    (
        ["seq=8,-1", "-m"],
        ["sweeper: bad input: seq=-1 must be a positive integer, e.g. seq=8 (in the job seq=-1)"],
    ),
    (
        ["seq=range(8,8)", "-m"],
        [
            "sweeper: bad input: the sweep is empty: an axis expands to no values",
            "give every swept key at least one value, e.g. seq=8,32",
        ],
    ),
]


@pytest.mark.parametrize("args, expected", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_refused_before_any_job(tmp_path, sweep_dir, args, expected):
    proc = run_sweeper(
        [f"hydra.sweep.dir={sweep_dir}", f"hydra.run.dir={sweep_dir}", *args],
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    for text in expected:
        assert text in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "a new model key belongs" not in proc.stderr
    assert "None of PyTorch, TensorFlow" not in proc.stderr + proc.stdout
    assert not list(sweep_dir.rglob("record.json"))
    assert not list(sweep_dir.rglob("worker-*.log"))
