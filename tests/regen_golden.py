"""Rewrite tests/data/golden_expected/ from the golden records: ``python -m tests.regen_golden``.

Run it only after a deliberate change of the report or CSV format, then read ``git diff
tests/data/golden_expected`` line by line: the golden files are what the tests hold the
collector to.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sweeper.report.collect import collect
from sweeper.report.paper import report as paper_report

DATA = Path(__file__).parent / "data"
GOLDEN, EXPECTED = DATA / "golden", DATA / "golden_expected"
CSV_FILES = (
    "inference_time.csv",
    "inference_memory.csv",
    "train_time.csv",
    "train_memory.csv",
    "env.csv",
    "summary.csv",
)
SWEEP_DIR_MARK = "<SWEEP_DIR>"
# The paper tables of the same records (python -m sweeper.report), one golden file per format.
PAPER_FILES = {"latex": "paper.tex", "md": "paper.md"}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        shutil.copytree(GOLDEN, sweep)
        result = collect(sweep)
        report = result.report.replace(str(sweep), SWEEP_DIR_MARK)
        (EXPECTED / "report.txt").write_text(report + "\n")
        for name in CSV_FILES:
            (EXPECTED / name).write_bytes((sweep / name).read_bytes())
        for fmt, name in PAPER_FILES.items():
            text = paper_report(sweep, fmt).replace(str(sweep), SWEEP_DIR_MARK)
            (EXPECTED / name).write_text(text)
    print(f"rewrote {EXPECTED}; review with: git diff {EXPECTED}")


if __name__ == "__main__":
    main()
