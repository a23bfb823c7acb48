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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        shutil.copytree(GOLDEN, sweep)
        result = collect(sweep)
        report = result.report.replace(str(sweep), SWEEP_DIR_MARK)
        (EXPECTED / "report.txt").write_text(report + "\n")
        for name in CSV_FILES:
            (EXPECTED / name).write_bytes((sweep / name).read_bytes())
    print(f"rewrote {EXPECTED}; review with: git diff {EXPECTED}")


if __name__ == "__main__":
    main()
