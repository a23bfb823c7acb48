"""Hydra's basic sweeper, plus: every job's config is checked before the first job runs, jobs
of one model run one after the other, and the sweep makes one pass per timing round.

Hydra already composes every job of a sweep up front (so a misspelt key fails early); this also
turns each composed config into sweeper's typed Job, so a bad value (``batch=0``) or an empty
sweep stops the command before any cell has been measured. Jobs are then put in an order where
the cells of one model are consecutive (stable: otherwise the user's order), so that each model
is built once (sweeper.engine.zygote's builders); the tables keep the user's order. With
``timing.rounds=k``, the jobs run in k passes (``sweep_round=1..k``), each measuring one more round
of every cell, so that a cell's rounds are spread over the sweep. Selected in
conf/hydra/sweeper.yaml with ``override sweeper: validating``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

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
    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self._first_pass_batches: Optional[int] = None
        self._rounds = 1

    def validate_batch_is_legal(self, batch: List[Sequence[str]]) -> None:
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
        composed = []
        for overrides in batch:
            cfg = loader.load_sweep_config(
                master_config=self.config, sweep_overrides=list(overrides)
            )
            try:
                job = job_from_config(cfg, list(overrides))
            except InputError as exc:
                raise type(exc)(f"{exc} (in the job {' '.join(overrides)})") from None
            composed.append((cfg, job))
        jobs = [job for _, job in composed]
        self.group_by_model(batch, jobs)
        if self._plan_rounds(batch, jobs):
            self._write_manifest(composed)

    def _plan_rounds(self, batch: List[Sequence[str]], jobs: list) -> bool:
        """Once the first pass's last batch is validated, add a pass per extra round.

        Returns whether ``batch`` belongs to the first pass (the cells, once each).
        """
        from sweeper.config.job import InputError

        if self._first_pass_batches is None:
            self._first_pass_batches = len(self.overrides)
            self._first_pass_jobs = sum(len(b) for b in self.overrides)
        if self.batch_index > self._first_pass_batches:
            return False  # a later pass: planned already
        for overrides in batch:
            if any(o.split("=", 1)[0].lstrip("+~") == "sweep_round" for o in overrides):
                raise InputError(
                    "sweep_round is set by the sweeper (one pass per timing round); leave it "
                    "out and set timing.rounds instead"
                )
        self._rounds = max(self._rounds, *(job.config.timing.rounds for job in jobs))
        if self.batch_index == self._first_pass_batches:
            first_pass = self.overrides[: self._first_pass_batches]
            for number in range(2, self._rounds + 1):
                self.overrides.extend(
                    [[*job, f"sweep_round={number}"] for job in first] for first in first_pass
                )
        return True

    @staticmethod
    def group_by_model(batch: List[Sequence[str]], jobs: list) -> None:
        """Reorder ``batch`` in place (it is what the launcher runs next) so that jobs building
        the same model are consecutive, models in order of first appearance.

        ``seq=8,32 model=a,b`` would otherwise alternate a, b, a, b and build each model twice.
        """
        from sweeper.record import Mode

        first_seen: Dict[str, int] = {}
        for job in jobs:
            first_seen.setdefault(job.build_key(Mode.inference), len(first_seen))
        order = sorted(
            range(len(batch)), key=lambda i: first_seen[jobs[i].build_key(Mode.inference)]
        )
        batch[:] = [batch[i] for i in order]

    def _write_manifest(self, composed: Sequence[tuple]) -> None:
        """``<sweep dir>/sweep.json``: every cell of this run (the first pass), its folder and
        identity, so the collector can tell this run's records from stale ones
        (sweeper/manifest.py). A sweep run in several batches (``max_batch_size``) lists each
        batch's jobs as it is validated."""
        from omegaconf import OmegaConf

        from sweeper.manifest import write_from_hydra

        sweep_dir = Path(self.config.hydra.sweep.dir)
        self._manifest_jobs = getattr(self, "_manifest_jobs", []) + [
            (sweep_dir / OmegaConf.select(cfg, "hydra.sweep.subdir"), job) for cfg, job in composed
        ]
        write_from_hydra(self.config, self._manifest_jobs, sweep_dir, self._first_pass_jobs)
