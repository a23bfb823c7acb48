"""Helpers shared by the tests: tiny models, the real command line, reading a sweep folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

from omegaconf import OmegaConf

from sweeper.config import CONF_DIR
from sweeper.config.schema import TimingConfig

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


def quick(rounds: int = 1) -> List[str]:
    """Short timing for end-to-end tests (the plumbing; precision is test_timing.py's), in
    ``rounds`` rounds (timing.rounds: passes of the sweep)."""
    return [
        "timing.min_time_s=0.05",
        "timing.max_time_s=1",
        "timing.warmup_min_s=0.05",
        f"timing.rounds={rounds}",
    ]


QUICK = quick()


def default_timing(**changes: Any) -> TimingConfig:
    """conf/config.yaml's timing options (the defaults users get) for one round, with
    ``changes``."""
    values = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "config.yaml").timing)
    values["rounds"] = 1  # the default interpolates the framework's: one process here
    return TimingConfig(**{**values, **changes})


def sweeper_env() -> Dict[str, str]:
    """The environment a user's shell would give: no Hydra debugging switched on."""
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_sweeper(
    args: Sequence[str], cwd: Path, timeout: float = 600, env: Dict[str, str] = None, **kwargs
):
    """Run `python -m sweeper ARGS` as a user would (``env``: variables to add); return the
    CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd,
        env={**sweeper_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_sweeper(args: Sequence[str], cwd: Path) -> subprocess.Popen:
    """`python -m sweeper ARGS` in its own process group, for tests that interrupt it."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd,
        env=sweeper_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def records(sweep_dir: Path) -> List[Dict]:
    """Every record.json under sweep_dir, parsed, sorted by (model, batch, seq)."""
    found = [json.loads(p.read_text()) for p in sweep_dir.rglob("record.json")]
    return sorted(
        found,
        key=lambda r: (r["cell"]["model"], r["cell"]["batch_size"], r["cell"]["sequence_length"]),
    )


def table_rows(report: str, label: str) -> list:
    """The data rows of one section of the printed report."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if label in line and line.startswith("=" * 20))
    assert lines[start + 1] == "-" * 80 and lines[start + 3] == "-" * 80
    end = lines.index("-" * 80, start + 4)
    return lines[start + 4 : end]
