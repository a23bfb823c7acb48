"""Hydra callback that collects the tables when a run or multirun ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..report.collect import collect

__all__ = ["CollectTables"]


class CollectTables(Callback):
    """Print the sweep's tables, write its CSV files, exit 1 if any cell failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._collect(Path(config.hydra.sweep.dir))

    def on_run_end(self, config: DictConfig, job_return: JobReturn = None, **kwargs: Any) -> None:
        if job_return is None or job_return.status != JobStatus.COMPLETED:
            return  # the job's own error is reported next; there is nothing to collect
        self._collect(Path(job_return.hydra_cfg.hydra.runtime.output_dir))

    @staticmethod
    def _collect(folder: Path) -> None:
        result = collect(folder)
        print(result.report, flush=True)
        if result.exit_code:
            sys.exit(result.exit_code)
