"""Shared helpers: Hydra's compose API with a clean GlobalHydra, and the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from sweeper import schema
from sweeper.app import CONF_DIR

REPO = Path(__file__).resolve().parent.parent

# A 2-layer BERT with hidden size 32: builds in well under a second, runs in about a millisecond.
TINY_BERT = [
    "model=bert_base",
    "model.name=tiny-bert",
    "model.hidden_size=32",
    "model.num_hidden_layers=2",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "model.vocab_size=1000",
]
# Short timing for end-to-end tests: we test the plumbing here, precision in test_timing.py.
QUICK = ["timing.min_time_s=0.05", "timing.max_time_s=1", "timing.warmup_min_s=0.05"]


@pytest.fixture
def compose_config():
    """compose_config(overrides) -> DictConfig, as `python -m sweeper OVERRIDES` would see it."""
    schema.register()

    def _compose(overrides: Sequence[str] = (), return_hydra_config: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides),
                           return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


def run_sweeper(args: Sequence[str], cwd: Path, timeout: float = 600, **kwargs):
    """Run `python -m sweeper ARGS` as a user would; return the CompletedProcess."""
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def records(sweep_dir: Path) -> List[Dict]:
    """Every record.json under sweep_dir, parsed, sorted by (model, batch, seq)."""
    found = [json.loads(p.read_text()) for p in sweep_dir.rglob("record.json")]
    return sorted(
        found,
        key=lambda r: (r["cell"]["model"], r["cell"]["batch_size"], r["cell"]["sequence_length"]),
    )
