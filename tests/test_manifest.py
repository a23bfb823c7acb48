"""The sweep manifest: written and read back whole, broken files named, and a resume command that
Hydra's command line accepts (overrides before -m, the folder pinned)."""

from __future__ import annotations

import pytest

from sweeper.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ManifestJob,
    new_manifest,
    read_manifest,
    resume_command,
)
from sweeper.record import Cell


def test_written_and_read_back(tmp_path):
    job = ManifestJob("seq=8", ["seq=8"], "ab" * 32, Cell("bert-base", "pt", "cpu", 8, 8))
    manifest = new_manifest(tmp_path, "python -m sweeper seq=8 -m", ["seq=8"], [job])
    manifest.write(tmp_path)
    again = read_manifest(tmp_path)
    assert again.jobs == [job] and again.total == 1 and again.run_id == manifest.run_id
    assert again.sweep_dir == str(tmp_path.resolve())
    assert read_manifest(tmp_path / "elsewhere") is None


@pytest.mark.parametrize(
    "text, problem",
    [("{", "cannot read"), ('{"kind": "other"}', "not a sweeper manifest")],
)
def test_a_broken_manifest_is_named(tmp_path, text, problem):
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(ManifestError, match=f"{tmp_path / MANIFEST_NAME}: {problem}"):
        read_manifest(tmp_path)


def test_the_resume_command_puts_overrides_before_m_and_pins_the_folder(tmp_path):
    command = resume_command(
        tmp_path / "sweep",
        ["model=bert_base", "seq=8,32", "hydra.searchpath=[file://paper conf]"],
        ["hydra.sweep.dir=outputs/old", "hydra.mode=MULTIRUN", "hydra.job.chdir=false"],
        config_dirs=["/papers/conf"],
        config_name="config",
    )
    assert command == (
        "python -m sweeper --config-dir /papers/conf model=bert_base seq=8,32 "
        "'hydra.searchpath=[file://paper conf]' hydra.job.chdir=false "
        f"hydra.sweep.dir={(tmp_path / 'sweep').resolve()} -m"
    )


def test_a_single_run_resumes_into_its_run_folder(tmp_path):
    command = resume_command(tmp_path, ["seq=8"], multirun=False, config_name="mine")
    assert command == f"python -m sweeper --config-name mine seq=8 hydra.run.dir={tmp_path}"
