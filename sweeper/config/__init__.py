"""The user's options as typed objects: schemas, the typed job of one cell, error explanations.

Runs in the Hydra process (and the worker rebuilds the same objects from plain data). Imports no
framework.
"""

from pathlib import Path

__all__ = ["CONF_DIR"]


def _conf_dir() -> Path:
    """The config groups: shipped inside the package when installed, at the top of a checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "conf"
    return installed if installed.is_dir() else package.parent / "conf"


CONF_DIR = str(_conf_dir())
