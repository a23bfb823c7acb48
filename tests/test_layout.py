"""The package layout's rules: no framework outside sweeper.frameworks' implementations, and the
module names users type keep working."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sweeper

FRAMEWORKS = ("torch", "tensorflow", "keras", "tf_keras", "jax", "flax")
# Framework implementations: imported only in the zygote and the worker, through frameworks.load.
IMPLEMENTATIONS = ("sweeper.frameworks.pt", "sweeper.frameworks.tf")


def framework_free_modules() -> list:
    """Every module of the package but the framework implementations, found by walking it."""
    names = [m.name for m in pkgutil.walk_packages(sweeper.__path__, "sweeper.")]
    names = [n for n in names if n not in IMPLEMENTATIONS and not n.endswith("__main__")]
    return ["sweeper", *sorted(names)]


def test_the_walk_finds_every_role():
    modules = framework_free_modules()
    for package in ("config", "engine", "measure", "report", "frameworks"):
        assert f"sweeper.{package}" in modules
    assert "sweeper.engine.worker" in modules and "sweeper.report.collect" in modules
    assert len(modules) >= 20


def test_no_module_outside_the_implementations_imports_a_framework():
    """Each module is imported in turn in one fresh interpreter; the first one that pulls in a
    framework is named."""
    code = (
        "import importlib, sys\n"
        f"for name in {framework_free_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"    bad = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)\n"
        "    if bad:\n"
        "        sys.exit(f'{name} imports {bad}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_module_names_users_type_still_run():
    for module in ("sweeper", "sweeper.collect"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "sweeper" in proc.stdout
