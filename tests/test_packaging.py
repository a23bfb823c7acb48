"""Installable like any Python tool: the wheel carries conf/ and every module, its console script
runs a cell from outside the repository, and an installed sweeper records no git commit."""

from __future__ import annotations

import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import sweeper
from tests.helpers import QUICK, REPO, TINY_BERT, sweeper_env


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _site_packages(python: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return _run([str(python), "-c", code]).stdout.strip()


def test_the_wheel_installs_and_runs_a_cell_outside_the_repository(tmp_path):
    # Built from a copy of the checkout's files: setuptools reuses a build/ folder and would
    # package what an earlier build left there.
    source = tmp_path / "source"
    listed = _run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"]
    ).stdout.split("\n")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ]
    )
    (wheel,) = wheels.glob("sweeper-*.whl")

    # The user's own repository, with the venv inside it: git there must not be taken for ours.
    user_repo = tmp_path / "paper"
    user_repo.mkdir()
    _run(["git", "init", "-q", str(user_repo)])
    _run(
        [
            "git",
            "-C",
            str(user_repo),
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "paper",
        ]
    )
    venv = user_repo / ".venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    # The heavy dependencies come from the development venv (a path, not a site folder: its
    # editable sweeper is not seen); sweeper itself only from the wheel.
    (Path(_site_packages(python)) / "deps.pth").write_text(_site_packages(Path(sys.executable)))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ]
    )

    where = _run(
        [
            str(python),
            "-c",
            "import sweeper, sweeper.config as c; print(sweeper.__file__); print(c.CONF_DIR)",
        ],
        cwd=user_repo,
    ).stdout.split()
    assert where[0].startswith(str(venv)) and where[1].startswith(str(venv))
    for group in ("model", "framework", "device", "sweep", "hydra"):
        assert list((Path(where[1]) / group).glob("*.yaml")), group
    ours = {m.name for m in pkgutil.walk_packages(sweeper.__path__, "sweeper.")}
    listing = (
        "import json, pkgutil, sweeper; "
        "print(json.dumps([m.name for m in pkgutil.walk_packages(sweeper.__path__, 'sweeper.')]))"
    )
    installed = set(json.loads(_run([str(python), "-c", listing], cwd=user_repo).stdout))
    assert ours <= installed, ours - installed

    sweep_dir = tmp_path / "sweep"
    env = sweeper_env()
    env.pop("PYTHONPATH", None)
    proc = _run(
        [
            str(venv / "bin" / "sweeper"),
            *TINY_BERT,
            *QUICK,
            "seq=8",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=user_repo,
        env=env,
    )
    assert "1 cells: 1 ok" in proc.stdout
    (path,) = sweep_dir.rglob("record.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok"
    assert record["environment"]["sweeper_commit"] is None
    assert record["environment"]["sweeper_version"] == sweeper.__version__
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_checkout_records_its_commit():
    from sweeper.measure.env import sweeper_commit

    head = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"]).stdout.strip()
    assert sweeper_commit() == head
