"""The Hydra entry: turn the composed config into a Job once and run that one cell.

It measures nothing itself (sweeper.engine.runner does, through worker processes) and never lets a
cell's failure escape: the record says what happened, so the multirun goes on and the collector
runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..config import CONF_DIR, schema
from ..config.errors import explain
from ..config.job import job_from_config
from ..record import RECORD_NAME
from ..report.collect import collect
from .runner import run_job
from .zygote import close_all

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
# Part of the default sweep folder's name: with the microseconds of ${now:...}, two sweeps started
# in the same second on one host never share a folder. Cached like ${now:}, so every job of a
# sweep (also a launcher's remote job) resolves the same folder.
OmegaConf.register_new_resolver("sweeper_pid", os.getpid, use_cache=True, replace=True)


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or a scheduler's SIGTERM: stop measuring, report, say how to resume.

    A BaseException, so that neither Hydra's job runner nor our "record every failure" handlers
    take it for a cell's failure.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Where the running sweep writes, and whether it is a multirun: what an interrupt reports on.
_RUNNING: Dict[str, Any] = {}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_app(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    _RUNNING.update(
        folder=Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.runtime.output_dir),
        multirun=multirun,
    )
    job = job_from_config(cfg, list(hydra_cfg.overrides.task))
    sweep_index = hydra_cfg.job.num if multirun else None
    record = run_job(
        job,
        Path(hydra_cfg.runtime.output_dir),
        sweep_index=sweep_index,
        hydra_choices={
            k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra/")
        },
        one_round=multirun,  # the validating sweeper runs one pass per round
    )
    log.debug("%s: %s", job.cell, record.status.value)  # the progress line reports it


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def resume_command(argv: List[str], folder: Path, multirun: bool) -> str:
    """The command that resumes an interrupted sweep: the same arguments, the same folder."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    args = [a for a in argv if not a.startswith(f"{key}=")]
    flags = [a for a in args if a in ("-m", "--multirun")]
    rest = [a for a in args if a not in flags]
    return shlex.join(["python", "-m", "sweeper", *rest, f"{key}={folder}", *flags])


def _report_interrupt(exc: Interrupted) -> int:
    """Stop every worker, print the finished cells' tables and the command that resumes."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the report short
    close_all()  # zygotes, builders and workers: nothing keeps measuring
    how = "Ctrl-C" if exc.signum == signal.SIGINT else exc.args[0]
    folder = _RUNNING.get("folder")
    if folder is None:
        print(
            f"sweeper: interrupted ({how}) before any cell ran; nothing was written.",
            file=sys.stderr,
        )
        return 128 + exc.signum
    if (folder / "multirun.yaml").exists() or any(folder.rglob(RECORD_NAME)):
        print(collect(folder).report, flush=True)
    print(
        f"\nsweeper: interrupted ({how}). The cell that was running has no record; every "
        f"finished cell's record is in {folder}.\nResume (finished cells are kept): "
        f"{resume_command(sys.argv[1:], folder, _RUNNING.get('multirun', False))}",
        file=sys.stderr,
        flush=True,
    )
    return 128 + exc.signum


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
    """``python -m sweeper``: Hydra, with config errors explained (value, what is allowed, fix)
    and interrupts (Ctrl-C, SIGTERM) ending in a report and the command that resumes.

    Set HYDRA_FULL_ERROR=1 to see Hydra's own traceback instead.
    """
    if _wants_model_info(sys.argv[1:]):
        from ..config.catalog import catalogue_text

        print(catalogue_text())
        return
    sys.argv[1:] = hydra_argv(sys.argv[1:])
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_interrupted)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        try:
            hydra_app()
        except Interrupted as exc:
            sys.exit(_report_interrupt(exc))
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let config errors reach us instead of Hydra's printer
    try:
        hydra_app()
    except Interrupted as exc:
        sys.exit(_report_interrupt(exc))
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        sys.exit(2)
