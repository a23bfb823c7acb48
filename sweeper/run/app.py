"""The Hydra entry: turn the composed config into a Job once and run that one cell.

It measures nothing itself (sweeper.run.runner does, through worker processes) and never lets a
cell's failure escape: the record says what happened, so the multirun goes on and the collector
runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import List

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..config import CONF_DIR, schema
from ..config.errors import explain
from ..config.job import job_from_config
from .runner import run_job

__all__ = ["hydra_app", "main"]

log = logging.getLogger("sweeper")

# Longest job folder name kept as it is; file systems refuse names over 255 bytes.
MAX_DIRNAME = 120


def cell_dirname(override_dirname: str) -> str:
    """A job folder name from Hydra's override_dirname: readable, deterministic, bounded.

    The same overrides always give the same name (which is what lets a sweep resume); a name too
    long for the file system keeps its start and ends with a hash of the whole.
    """
    name = override_dirname.replace("/", "_") or "default"
    if len(name) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_DIRNAME - 14]}-h{digest}"


schema.register()
OmegaConf.register_new_resolver("sweeper_dirname", cell_dirname, replace=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_app(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    job = job_from_config(cfg, list(hydra_cfg.overrides.task))
    sweep_index = hydra_cfg.job.num if hydra_cfg.mode == RunMode.MULTIRUN else None
    record = run_job(
        job,
        Path(hydra_cfg.runtime.output_dir),
        sweep_index=sweep_index,
        hydra_choices={
            k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra/")
        },
    )
    (log.error if record.status.failed else log.info)(
        "%s: %s%s", job.cell, record.status.value, f" ({record.error})" if record.error else ""
    )


MULTIRUN_FLAGS = ("-m", "--multirun")


def hydra_argv(argv: List[str]) -> List[str]:
    """``argv`` with -m/--multirun moved to the front.

    Hydra's argparse takes overrides before ``-m`` or all after it, so ``seq=8 -m batch=1``
    failed with "unrecognized arguments"; the flag's position means nothing else.
    """
    flags = [arg for arg in argv if arg in MULTIRUN_FLAGS]
    if not flags:
        return list(argv)
    return [flags[0], *[arg for arg in argv if arg not in MULTIRUN_FLAGS]]


def _wants_model_info(argv: List[str]) -> bool:
    """``--info models``: not one of Hydra's --info topics, so it is answered here."""
    pairs = zip(argv, argv[1:])
    return "--info=models" in argv or any(a == "--info" and b == "models" for a, b in pairs)


def main() -> None:
    """``python -m sweeper``: Hydra, with config errors explained (value, what is allowed, fix).

    Set HYDRA_FULL_ERROR=1 to see Hydra's own traceback instead.
    """
    if _wants_model_info(sys.argv[1:]):
        from ..config.catalog import catalogue_text

        print(catalogue_text())
        return
    sys.argv[1:] = hydra_argv(sys.argv[1:])
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_app()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let config errors reach us instead of Hydra's printer
    try:
        hydra_app()
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        sys.exit(2)
