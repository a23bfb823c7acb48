"""The environment a cell ran in: the old tool's ENVIRONMENT INFORMATION keys, and more.

Gathered in the Hydra process without importing a framework: versions come from installed
package metadata, GPU facts from NVML; the worker adds what only the framework knows (threads,
device name) under ``framework_runtime``. Under a launcher the Hydra process runs on the node, so
these are the node's facts, plus which SLURM job or Ray task ran the cell (:func:`cluster_facts`).
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

import psutil

from .. import __version__
from ..config.schema import Config, Device, PtConfig
from ..units import MIB
from .gpu import gpu_inventory

__all__ = ["cluster_facts", "environment"]


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


# SLURM's variables in a job's environment (sbatch, srun): (record key, variable). The job ids are
# per-run keys (sweeper.record.PER_RUN_ENV_KEYS); node, partition and cluster are compared.
_SLURM_VARIABLES = (
    ("slurm_job_id", "SLURM_JOB_ID"),
    ("slurm_array_job_id", "SLURM_ARRAY_JOB_ID"),
    ("slurm_array_task_id", "SLURM_ARRAY_TASK_ID"),
    ("slurm_node", "SLURMD_NODENAME"),
    ("slurm_partition", "SLURM_JOB_PARTITION"),
    ("slurm_cluster", "SLURM_CLUSTER_NAME"),
)


def cluster_facts() -> Dict[str, Any]:
    """Which scheduler job or Ray task ran this cell, and on which node; empty when none did.

    Read where the job runs (on the node). submitit and Ray are looked up only when the launcher
    already imported them into this process: nothing is imported here.
    """
    facts: Dict[str, Any] = {
        key: os.environ[variable] for key, variable in _SLURM_VARIABLES if variable in os.environ
    }
    submitit = sys.modules.get("submitit")
    if submitit is not None:
        try:
            facts["submitit_job_id"] = submitit.JobEnvironment().job_id
        except Exception:  # not inside a submitit job
            pass
    ray = sys.modules.get("ray")
    if ray is not None:
        try:
            if ray.is_initialized():
                context = ray.get_runtime_context()
                facts["ray_node_id"] = context.get_node_id()
                facts["ray_job_id"] = context.get_job_id()
                facts["ray_task_id"] = context.get_task_id()
        except Exception:  # an old or partial Ray: its facts are a bonus
            pass
    return facts


def _cpus_allowed() -> Optional[int]:
    """CPUs this process may run on: fewer than cpu_count under a SLURM or container cpuset."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


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
        cpus_allowed=_cpus_allowed(),
        kernel=platform.release(),
        sweeper_version=__version__,
        sweeper_commit=sweeper_commit(),
        hydra_version=_version("hydra-core"),
        keras_version=_version("tf-keras") if not pt else None,
    )
    env.update(cluster_facts())
    return env
