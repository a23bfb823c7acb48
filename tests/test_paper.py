"""Paper tables (python -m sweeper.report): LaTeX and Markdown against golden files made from the
golden records, provenance from the manifest, CSV that parses, bad input refused."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from sweeper.report.paper import main, report, with_uncertainty
from sweeper.report.render import Table, latex_escape, render
from tests.synthetic import GOLDEN, make_record, write_manifest, write_sweep

EXPECTED = Path(__file__).parent / "data" / "golden_expected"
MARK = "<SWEEP_DIR>"


@pytest.fixture
def sweep(tmp_path):
    shutil.copytree(GOLDEN, tmp_path / "sweep")
    return tmp_path / "sweep"


@pytest.mark.parametrize("fmt, name", [("latex", "paper.tex"), ("md", "paper.md")])
def test_the_golden_paper_tables(sweep, fmt, name):
    got = report(sweep, fmt).replace(str(sweep), MARK).splitlines()
    want = (EXPECTED / name).read_text().splitlines()
    for number, (line, expected) in enumerate(zip(got, want), 1):
        assert line == expected, f"line {number}"
    assert len(got) == len(want)


def test_latex_is_booktabs_and_balanced(sweep):
    text = report(sweep, "latex")
    assert text.count(r"\begin{table}") == text.count(r"\end{table}") == 5
    assert text.count(r"\toprule") == text.count(r"\midrule") == text.count(r"\bottomrule") == 5
    assert r"\hline" not in text
    body = [line for line in text.splitlines() if not line.startswith("%")]
    for line in body:  # every row has as many cells as its tabular has columns
        if line.endswith(r"\\") and "&" in line and "multicolumn" not in line:
            assert line.count("&") in (4, 5), line
    assert "_" not in "".join(body).replace(r"\_", "").replace(r"tab:sweeper-", "")


def test_provenance_names_the_command_version_commit_and_hardware(tmp_path):
    records = [(f"s{s}", make_record(seq=s, sweep_index=i)) for i, s in enumerate((8, 32, 128))]
    sweep = write_sweep(tmp_path / "sweep", records)
    command = "python -m sweeper sweep=seed_bert_base hydra.sweep.dir=/x -m"
    write_manifest(sweep, records, command=command)
    head = [line.rstrip() for line in report(sweep, "md").split("\n\n")[0].splitlines()]
    assert head[1] == f"Command: {command}"
    assert head[2] == "sweeper version unknown, commit abc"
    assert head[3] == "Hardware: Example CPU, 2 CPUs, 24105 MB RAM; host bench-1"


def test_csv_parses_with_one_row_per_model(sweep):
    text = report(sweep, "csv")
    blocks = [b for b in text.split("\n\n") if not b.startswith("#")]
    rows = list(csv.reader(io.StringIO(blocks[0])))
    assert rows[0] == ["table", "model", "seq 8", "seq 32", "seq 128", "seq 1024"]
    assert rows[1][1:] == ["bert-base", "6.10 ± 0.06", "8.30 ± 0.08*", "0.400 ± 0.004", "N/A"]


@pytest.mark.parametrize(
    "value, halfwidth, text",
    [(6.1, 0.061, "6.10 ± 0.06"), (885, 16, "885 ± 16"), (1.231, 0.0123, "1.231 ± 0.012")],
)
def test_numbers_are_written_to_their_uncertainty(value, halfwidth, text):
    assert with_uncertainty(value, halfwidth) == text


def test_latex_escapes_what_labels_and_errors_contain():
    assert latex_escape("bert_base[a=1] 50 % > 3 ± 1") == (r"bert\_base[a=1] 50 \% $>$ 3 $\pm$ 1")


def test_one_renderer_many_formats():
    table = Table("T", "model", ["8"], [["m|x", "1*"]], notes=["* noisy"])
    assert render([table], "md").splitlines()[2:5] == [
        "| model | 8 |",
        "| :--- | ---: |",
        r"| m\|x | 1\* |",
    ]
    assert render([table], "text").splitlines()[2:5] == ["model   8", "---------", "m|x    1*"]
    with pytest.raises(ValueError, match="'html' is not one of text, md, latex, csv"):
        render([table], "html")


def test_the_command_line(sweep, tmp_path, capsys):
    out = tmp_path / "tables.tex"
    assert main([str(sweep), "--format", "latex", "--output", str(out)]) == 0
    assert out.read_text().startswith("% sweeper report of")
    assert main([str(tmp_path / "empty")]) == 2
    assert "is not a folder" in capsys.readouterr().err
