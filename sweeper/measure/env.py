"""The environment a cell ran in: the old tool's ENVIRONMENT INFORMATION keys, and more.

Gathered in the Hydra process without importing a framework: versions come from installed
package metadata, GPU facts from NVML; the worker adds what only the framework knows (threads,
device name) under ``framework_runtime``.
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

import psutil

from .. import __version__
from ..config.schema import Config, Device, PtConfig
from ..units import MIB
from .gpu import gpu_inventory

__all__ = ["environment"]


# Where the sweeper package sits: a git checkout's root when running from one, a site-packages
# folder when installed.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "-C", str(_PACKAGE_PARENT), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def sweeper_commit() -> Optional[str]:
    """The commit of sweeper's own checkout, or None when sweeper does not run from one.

    An installed sweeper can sit in a venv inside the user's repository: git would then answer
    with the user's commit, so the checkout must be rooted exactly where the package is.
    """
    toplevel = _git("rev-parse", "--show-toplevel")
    if toplevel is None or Path(toplevel).resolve() != _PACKAGE_PARENT:
        return None
    return _git("rev-parse", "HEAD")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(config: Config, now: Optional[datetime.datetime] = None) -> Dict[str, Any]:
    """Every key of the old tool's environment block with real values, then extra context."""
    now = now or datetime.datetime.now()
    pt = isinstance(config.framework, PtConfig)
    env: Dict[str, Any] = {
        "transformers_version": _version("transformers"),
        "framework": "PyTorch" if pt else "Tensorflow",
    }
    if pt:
        env["use_torchscript"] = config.framework.torchscript
    else:
        env["eager_mode"] = config.framework.eager_mode
        env["use_xla"] = config.framework.use_xla
    env.update(
        framework_version=_version("torch" if pt else "tensorflow"),
        python_version=platform.python_version(),
        system=platform.system(),
        cpu=platform.processor() or platform.machine(),
        architecture=platform.architecture()[0],
        date=now.date().isoformat(),
        time=now.time().isoformat(),
        fp16=bool(pt and config.framework.fp16),
        use_multiprocessing=True,  # every cell runs in a fresh worker process
        only_pretrain_model=config.only_pretrain_model,
        cpu_ram_mb=int(psutil.virtual_memory().total / MIB),
        use_gpu=config.device.name is Device.cuda,
    )
    if env["use_gpu"]:
        env.update(gpu_inventory())
    env["use_tpu"] = False
    env.update(
        timestamp_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        kernel=platform.release(),
        sweeper_version=__version__,
        sweeper_commit=sweeper_commit(),
        hydra_version=_version("hydra-core"),
        keras_version=_version("tf-keras") if not pt else None,
    )
    return env
