"""Hydra's basic sweeper, plus: every job's config is checked before the first job runs.

Hydra already composes every job of a sweep up front (so a misspelt key fails early); this also
turns each composed config into sweeper's typed Job, so a bad value (``batch=0``) or an empty
sweep stops the command before any cell has been measured. Selected in conf/config.yaml with
``override hydra/sweeper: validating``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class ValidatingSweeperConf:
    _target_: str = "hydra_plugins.sweeper_validating.validating_sweeper.ValidatingSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="validating", node=ValidatingSweeperConf, provider="sweeper"
)


class ValidatingSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from sweeper.config.job import InputError, job_from_config

        if not batch:
            task = list(self.config.hydra.overrides.task)
            params = dict(self.params or {})
            raise InputError(
                "the sweep is empty: an axis expands to no values (command-line overrides: "
                f"{task or 'none'}; hydra.sweeper.params: {params or 'none'}); give every swept "
                "key at least one value, e.g. seq=8,32"
            )
        loader = self.hydra_context.config_loader
        composed = []
        for overrides in batch:
            cfg = loader.load_sweep_config(
                master_config=self.config, sweep_overrides=list(overrides)
            )
            try:
                job = job_from_config(cfg, list(overrides))
            except InputError as exc:
                raise InputError(f"{exc} (in the job {' '.join(overrides)})") from None
            composed.append((cfg, job))
        self._write_manifest(composed)

    def _write_manifest(self, composed: Sequence[tuple]) -> None:
        """``<sweep dir>/sweep.json``: every job of this run, its folder and identity, so the
        collector can tell this run's records from stale ones (sweeper/manifest.py). A sweep run
        in several batches (``max_batch_size``) lists each batch's jobs as it is validated."""
        from omegaconf import OmegaConf

        from sweeper.manifest import write_from_hydra

        sweep_dir = Path(self.config.hydra.sweep.dir)
        self._manifest_jobs = getattr(self, "_manifest_jobs", []) + [
            (sweep_dir / OmegaConf.select(cfg, "hydra.sweep.subdir"), job) for cfg, job in composed
        ]
        total = sum(len(batch) for batch in self.overrides or [])
        write_from_hydra(self.config, self._manifest_jobs, sweep_dir, total)
