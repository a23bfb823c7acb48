"""Hydra callback: a progress line per finished cell, and the tables and plots when a run ends.

Runs in the Hydra process. ``on_job_end`` prints one line per finished cell
(sweeper.report.progress); the total comes from the run's manifest (``sweep.json``), which the
validating sweeper writes for a multirun and ``on_run_start`` writes here for a single run.
``on_multirun_end`` collects the tables and CSV files (sweeper.report.collect), draws the plots
(sweeper.report.plot, when some line has three points or more) and exits 1 if a cell failed.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..manifest import ManifestError, read_manifest, write_from_hydra
from ..record import RECORD_NAME, RecordError, read_record
from ..report.collect import collect
from ..report.progress import Progress, cell_text, varying_overrides

__all__ = ["CollectTables"]

log = logging.getLogger(__name__)


class CollectTables(Callback):
    """Print a line per finished cell; at the end, the sweep's tables, CSV files and plots; exit
    1 if any cell failed."""

    def __init__(self) -> None:
        self._progress: Optional[Progress] = None
        self._varying: list = []
        self._job_started = 0.0
        self._job_started_utc = ""
        self._sweep_dir: Optional[Path] = None  # set for a multirun
        self._rounds = 1

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)
        # The validating sweeper runs the cells once per timing round: a line per cell and round.
        self._rounds = int(config.timing.rounds)

    # -- a single run (no -m): no sweeper, so the manifest is written here --------------------

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ..config.job import job_from_config

        try:
            job = job_from_config(config, list(config.hydra.overrides.task))
        except Exception:  # bad input: the job itself raises it next, with its explanation
            return
        run_dir = Path(config.hydra.run.dir)
        write_from_hydra(config, [(run_dir, job)], run_dir, 1, multirun=False)

    def on_run_end(self, config: DictConfig, job_return: JobReturn = None, **kwargs: Any) -> None:
        if job_return is None or job_return.status != JobStatus.COMPLETED:
            return  # the job's own error is reported next; there is nothing to collect
        self._collect(Path(job_return.hydra_cfg.hydra.runtime.output_dir), plots=False)

    # -- every job -----------------------------------------------------------------------------

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = time.perf_counter()
        self._job_started_utc = datetime.datetime.now(datetime.timezone.utc).isoformat()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        wall_s = time.perf_counter() - self._job_started
        if job_return is None or job_return.status != JobStatus.COMPLETED:
            return
        folder = Path(config.hydra.runtime.output_dir)
        try:
            record = read_record(folder / RECORD_NAME)
        except RecordError:
            return
        if self._progress is None:  # the manifest exists by now: written before the first job
            self._progress = self._start_progress(self._sweep_dir or folder)
        kept = (record.finished_utc or "") < self._job_started_utc
        cell = cell_text(record, record.overrides, self._varying)
        if self._rounds > 1:
            cell += f", round {record.rounds or 1}/{self._rounds}"
        self._progress.emit(record, wall_s, kept, cell)

    def _start_progress(self, sweep_dir: Path) -> Progress:
        try:
            manifest = read_manifest(sweep_dir)
        except ManifestError:
            manifest = None
        if manifest is None:  # a single run, or a sweeper that wrote none
            return Progress(total=1, stream=sys.stdout)
        self._varying = varying_overrides(manifest.jobs)
        return Progress(total=manifest.total * self._rounds, stream=sys.stdout)

    # -- the end -------------------------------------------------------------------------------

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._collect(Path(config.hydra.sweep.dir), plots=True)

    @staticmethod
    def _collect(folder: Path, plots: bool) -> None:
        result = collect(folder)
        print(result.report, flush=True)
        if plots and result.records:
            try:
                from ..report.plot import write_plots

                written = write_plots(folder, records=result.records)
            except Exception as exc:  # a figure must never cost the user the sweep's exit status
                log.warning("plots not drawn: %s: %s", type(exc).__name__, exc)
            else:
                if written:
                    print(f"plots: {', '.join(str(p) for p in written)}", flush=True)
        if result.exit_code:
            sys.exit(result.exit_code)
