"""Real multiruns through `python -m sweeper` in a subprocess, both frameworks, tiny models."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from tests.helpers import QUICK, TINY_BERT, quick, records, run_sweeper, table_rows

SECTIONS = (
    "INFERENCE - SPEED - RESULT",
    "INFERENCE - MEMORY - RESULT",
    "TRAIN - SPEED - RESULTS",
    "TRAIN - MEMORY - RESULTS",
)


@pytest.mark.parametrize(
    "framework",
    ["pt", pytest.param("tf", marks=pytest.mark.slow)],  # TF: test_sharing.py too
)
def test_inference_and_training_sweep(tmp_path, sweep_dir, framework):
    proc = run_sweeper(
        [
            *TINY_BERT,
            # Two rounds in PyTorch (forked from one builder); one in TensorFlow, whose every
            # round pays a build and graph tracing (rounds: test_rounds.py).
            *quick(rounds=2 if framework == "pt" else 1),
            f"framework={framework}",
            "batch=2",
            "seq=8,16",
            "training=true",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in SECTIONS:
        rows = table_rows(proc.stdout, label)
        assert [r.split()[:3] for r in rows] == [["tiny-bert", "2", "8"], ["tiny-bert", "2", "16"]]
        for row in rows:
            value = row[60:].strip().rstrip("*")
            assert value == "< 0.001" or float(value) > 0
    env = proc.stdout.split("ENVIRONMENT INFORMATION")[1]
    assert f"- framework: {'PyTorch' if framework == 'pt' else 'Tensorflow'}" in env
    assert "- use_multiprocessing: True" in env and "- cpu_ram_mb: " in env

    found = records(sweep_dir)
    assert [r["cell"]["sequence_length"] for r in found] == [8, 16]
    for record in found:
        assert record["status"] == "ok" and record["cell"]["framework"] == framework
        assert record["config"]["framework"]["name"] == framework
        assert record["environment"]["transformers_version"].startswith("4.57")
        for mode in ("inference", "training"):
            result = record["results"][mode]
            timing, memory = result["time"], result["memory"]
            assert 0 < timing["min_s"] <= timing["median_s"] < 1.0
            assert len(timing["samples_s"]) == timing["timed_calls"] >= 6
            assert timing["first_call_s"] > 0 and timing["warmup_calls"] >= 1
            assert memory["peak_rss_mib"] >= memory["baseline_rss_mib"] > 100
            assert memory["headline_mib"] == memory["peak_rss_mib"]
            assert (
                result["model_class"]
                == {
                    ("pt", "inference"): "BertModel",
                    ("pt", "training"): "BertForMaskedLM",
                    ("tf", "inference"): "TFBertModel",
                    ("tf", "training"): "TFBertForMaskedLM",
                }[framework, mode]
            )
            rounds = 2 if framework == "pt" else 1
            assert timing.get("rounds", 1) == rounds and len(result.get("rounds") or [1]) == rounds
            assert (
                sum(timing.get("round_sizes") or [timing["timed_calls"]]) == timing["timed_calls"]
            )
            phases = result["phases_s"]
            if framework == "pt":  # a builder per mode built the model once, for both cells
                first = record["cell"]["sequence_length"] == 8
                assert result["build"]["shared"] and result["build"]["new"] is first
                assert ("build_s" in phases) is first and "import_s" not in phases
            else:  # each TensorFlow worker builds its model, from one weights snapshot
                first = record["cell"]["sequence_length"] == 8
                assert result["build"]["via"] == "weights snapshot"
                assert result["build"]["new"] is first and ("snapshot_s" in phases) is first
                assert phases["build_s"] > 0 and phases["import_s"] < 0.1
        for mode in ("inference", "training"):  # one zygote served every measurement
            result = record["results"][mode]
            assert result["worker_start"] == "fork"
            assert result["zygote"]["pid"] == found[0]["results"]["inference"]["zygote"]["pid"]
            assert result["zygote"]["import_s"] > 0.5
        overhead = record["overhead"]
        assert overhead["workers"] == 2 * rounds  # two modes, each round
        # The Hydra process waits for its workers in the kernel; a busy wait would cost ~wall.
        assert overhead["hydra_process_cpu_s"] < 0.1 * overhead["job_wall_s"]
        assert overhead["overhead_s"] == pytest.approx(
            overhead["job_wall_s"] - overhead["warmup_and_timed_s"]
        )

    with open(sweep_dir / "inference_time.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["model", "batch_size", "sequence_length", "result"]
    assert [row[:3] for row in rows[1:]] == [["tiny-bert", "2", "8"], ["tiny-bert", "2", "16"]]
    median = found[0]["results"]["inference"]["time"]["median_s"]
    assert rows[1][3] == f"{median:.4f}"
    for name in ("inference_memory.csv", "train_time.csv", "train_memory.csv", "env.csv"):
        assert (sweep_dir / name).exists()


def test_speed_false_drops_the_speed_sections(tmp_path, sweep_dir):
    proc = run_sweeper(
        [
            *TINY_BERT,
            "speed=false",
            "batch=1",
            "seq=8",
            "model.architecture=BertForMaskedLM",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "INFERENCE - SPEED - RESULT" not in proc.stdout
    assert len(table_rows(proc.stdout, "INFERENCE - MEMORY - RESULT")) == 1
    (record,) = records(sweep_dir)
    assert "time" not in record["results"]["inference"]
    memory = record["results"]["inference"]["memory"]
    assert memory["calls_covered"] == "one call after the cold call"
    assert not (sweep_dir / "inference_time.csv").exists()
    assert record["results"]["inference"]["model_class"] == "BertForMaskedLM"
    # The record shows the config the model was built with, and its size.
    built = record["results"]["inference"]["model_config"]
    assert (built["hidden_size"], built["num_hidden_layers"], built["vocab_size"]) == (32, 2, 1000)
    assert built["architectures"] is None and built["model_type"] == "bert"
    # Counted by hand: embeddings (1000 words + 512 positions + 2 types) x 32 + LayerNorm 64 =
    # 48512; per layer q,k,v 3 x 1056, output 1056, LN 64, FFN 2112 + 2080, LN 64 = 8544, x 2;
    # MLM head: transform 1056 + LN 64 + decoder bias 1000 (its weight is the word embeddings').
    assert record["results"]["inference"]["model_parameters"] == 48512 + 2 * 8544 + 2120


@pytest.mark.slow  # make test-slow (CI runs it too)
def test_the_collector_runs_again_on_a_sweep_folder(tmp_path, sweep_dir):
    first = run_sweeper(
        [*TINY_BERT, *QUICK, "batch=1", "seq=8", f"hydra.sweep.dir={sweep_dir}", "-m"], cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    (sweep_dir / "inference_time.csv").unlink()
    again = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", str(sweep_dir)], capture_output=True, text=True
    )
    assert again.returncode == 0
    assert table_rows(again.stdout, "INFERENCE - SPEED - RESULT") == table_rows(
        first.stdout, "INFERENCE - SPEED - RESULT"
    )
    assert (sweep_dir / "inference_time.csv").exists()


@pytest.mark.slow  # make test-slow (CI runs it too)
def test_spawned_workers_measure_the_same_cell(tmp_path, sweep_dir):
    """worker_start=spawn (a new interpreter per measurement, for platforms without fork)."""
    proc = run_sweeper(
        [
            *TINY_BERT,
            *QUICK,
            "worker_start=spawn",
            "batch=1",
            "seq=8",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(sweep_dir)
    result = record["results"]["inference"]
    assert result["worker_start"] == "spawn" and "zygote" not in result
    assert result["phases_s"]["import_s"] > 0.5  # this worker imported the framework itself
    assert result["time"]["median_s"] > 0


@pytest.mark.parametrize(
    "options",
    [
        ["framework=pt", "framework.torchscript=true"],
        pytest.param(["framework=tf", "framework.use_xla=true"], marks=pytest.mark.slow),
        ["framework=tf", "framework.eager_mode=true"],
    ],
    ids=["torchscript", "xla", "eager"],
)
def test_framework_options_run(tmp_path, sweep_dir, options):
    proc = run_sweeper(
        [*TINY_BERT, *QUICK, *options, "batch=1", "seq=16", f"hydra.sweep.dir={sweep_dir}", "-m"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(sweep_dir)
    assert record["status"] == "ok"
    assert record["results"]["inference"]["time"]["median_s"] > 0
    key, value = options[1].split("=")
    flag = key.split(".")[1]
    assert record["environment"]["use_torchscript" if flag == "torchscript" else flag] is True


# The same canonical keys (each config class's attribute_map aliases) make every family tiny.
TINY_CANONICAL = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
]
TINY_FAMILIES = {
    "t5_small": [],
    "gpt2": [],
    "bart_base": [],  # both stacks: encoder_layers/decoder_layers, both attention head counts
    "distilbert_base": [],
    "roberta_base": [],
    "smollm_135m": ["model.num_key_value_heads=1"],  # grouped-query: must divide the 2 heads
}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(TINY_FAMILIES))
def test_every_model_family_runs_in_both_frameworks(tmp_path, sweep_dir, model):
    proc = run_sweeper(
        [
            f"model={model}",
            *TINY_CANONICAL,
            *TINY_FAMILIES[model],
            *QUICK,
            "framework=pt,tf",
            "training=true",
            "batch=2",
            "seq=16",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    found = {r["cell"]["framework"]: r for r in records(sweep_dir)}
    assert found["pt"]["status"] == "ok", found["pt"]["error"]
    if model == "smollm_135m":  # Llama has no TensorFlow class in transformers
        assert proc.returncode == 1
        assert "no TensorFlow base-model class for model_type=llama" in found["tf"]["error"]
        built = [found["pt"]]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert found["tf"]["status"] == "ok", found["tf"]["error"]
        built = [found["pt"], found["tf"]]
    for record in built:
        for result in record["results"].values():
            config = result["model_config"]
            assert (config["hidden_size"], config["num_hidden_layers"]) == (32, 1)
            assert config["num_attention_heads"] == 2
            if model == "bart_base":
                assert (config["encoder_layers"], config["decoder_layers"]) == (1, 1)
                assert config["decoder_attention_heads"] == 2
