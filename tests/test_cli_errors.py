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
            "sweeper: unknown key model.hiden_size: model has no key 'hiden_size'.",
            "Did you mean model.hidden_size?",
            "Keys of model (BertModelConfig): name, model_type, architecture, vocab_size, "
            "hidden_size,",
        ],
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
    assert not list(sweep_dir.rglob("record.json"))
    assert not list(sweep_dir.rglob("worker-*.log"))
