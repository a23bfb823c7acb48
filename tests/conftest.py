"""Fixtures: Hydra's compose API with a clean GlobalHydra, and a sweep folder per test."""

from __future__ import annotations

from typing import Sequence

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from sweeper.config import CONF_DIR, schema


@pytest.fixture
def compose_config():
    """compose_config(overrides) -> DictConfig, as `python -m sweeper OVERRIDES` would see it."""
    schema.register()

    def _compose(overrides: Sequence[str] = (), return_hydra_config: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(
                config_name="config",
                overrides=list(overrides),
                return_hydra_config=return_hydra_config,
            )

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def sweep_dir(tmp_path):
    """Where a test's sweep writes (hydra.sweep.dir); the test runs from tmp_path."""
    return tmp_path / "sweep"
