"""Hydra's basic sweeper, plus: every job's config is checked before the first job runs.

Hydra already composes every job of a sweep up front (so a misspelt key fails early); this also
turns each composed config into sweeper's typed Job, so a bad value (``batch=0``) or an empty
sweep stops the command before any cell has been measured. Selected in conf/config.yaml with
``override hydra/sweeper: validating``.
"""

from dataclasses import dataclass
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
        from sweeper.config.job import InputError, job_from_config, refuse_preset_lists

        refuse_preset_lists(self.config.hydra.overrides.task)
        if not batch:
            task = list(self.config.hydra.overrides.task)
            params = dict(self.params or {})
            raise InputError(
                "the sweep is empty: an axis expands to no values (command-line overrides: "
                f"{task or 'none'}; hydra.sweeper.params: {params or 'none'}); give every swept "
                "key at least one value, e.g. seq=8,32"
            )
        loader = self.hydra_context.config_loader
        for overrides in batch:
            cfg = loader.load_sweep_config(
                master_config=self.config, sweep_overrides=list(overrides)
            )
            try:
                job_from_config(cfg, list(overrides))
            except InputError as exc:
                raise type(exc)(f"{exc} (in the job {' '.join(overrides)})") from None
