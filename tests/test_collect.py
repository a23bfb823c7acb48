"""The collector against committed golden records: tables and CSV files line by line, and its
robustness to broken, foreign and mixed records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sweeper.report.collect import collect, main

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


@pytest.fixture
def sweep(tmp_path):
    target = tmp_path / "sweep"
    shutil.copytree(GOLDEN, target)
    return target


def test_report_matches_the_golden_text_line_by_line(sweep, capsys):
    assert main([str(sweep)]) == 1  # one cell ran out of memory
    printed = capsys.readouterr().out.replace(str(sweep), "<SWEEP_DIR>").splitlines()
    expected = (EXPECTED / "report.txt").read_text().splitlines()
    for number, (got, want) in enumerate(zip(printed, expected), 1):
        assert got == want, f"line {number}"
    assert len(printed) == len(expected)


@pytest.mark.parametrize("name", CSV_FILES)
def test_csv_files_match_the_golden_files_byte_for_byte(sweep, name):
    collect(sweep)
    assert (sweep / name).read_bytes() == (EXPECTED / name).read_bytes()


def test_seed_layout_details(sweep):
    report = collect(sweep, write=False).report.splitlines()
    title = report.index(20 * "=" + "       INFERENCE - SPEED - RESULT       " + 20 * "=")
    assert report[title - 1] == ""
    assert report[title + 1] == "-" * 80
    assert report[title + 2] == (
        "          Model Name             Batch Size     Seq Length     Time in s   "
    )
    assert "< 0.001" in report[title + 6] and "N/A" in report[title + 7]
    assert report[title + 5].split() == ["bert-base", "8", "32", "0.008*"]
    assert "* noisy" in report[title + 10]
    assert "    Memory in MB " in "\n".join(report)


def test_model_names_are_cut_to_30_characters(sweep):
    record_path = sweep / "seq=8" / "record.json"
    record = json.loads(record_path.read_text())
    record["cell"]["model"] = "m" * 40
    record_path.write_text(json.dumps(record))
    report = collect(sweep, write=False).report
    assert "m" * 30 in report and "m" * 31 not in report


def test_broken_and_foreign_files_are_reported_by_path_and_skipped(sweep):
    (sweep / "trunc").mkdir()
    good = (sweep / "seq=8" / "record.json").read_text()
    (sweep / "trunc" / "record.json").write_text(good[: len(good) // 2])
    (sweep / "empty").mkdir()
    (sweep / "empty" / "record.json").write_text("")
    (sweep / "foreign").mkdir()
    (sweep / "foreign" / "record.json").write_text('{"hello": "world"}')
    result = collect(sweep)
    assert len(result.records) == 5
    messages = "\n".join(result.unreadable)
    assert f"{sweep / 'trunc' / 'record.json'}: not valid JSON, truncated?" in messages
    assert f"{sweep / 'empty' / 'record.json'}: empty file" in messages
    assert f"{sweep / 'foreign' / 'record.json'}: not a sweeper cell record" in messages
    assert result.report.count("skipped unreadable record:") == 3


def test_records_from_different_machines_warn_and_show_the_difference(sweep):
    path = sweep / "seq=32" / "record.json"
    record = json.loads(path.read_text())
    record["environment"]["framework_version"] = "2.12.0+cpu"
    record["environment"]["hostname"] = "other-host"
    path.write_text(json.dumps(record))
    result = collect(sweep, write=False)
    assert any("framework_version, hostname differ" in w for w in result.warnings)
    assert "- framework_version: 2.13.0+cpu (4 cells); 2.12.0+cpu (1 cell)" in result.report
    assert "- hostname: bench-1 (4 cells); other-host (1 cell)" in result.report


def test_a_sweep_across_frameworks_stays_unambiguous(sweep):
    path = sweep / "model.hidden_size=384,seq=8" / "record.json"
    record = json.loads(path.read_text())
    record["cell"]["framework"] = "tf"
    record["environment"]["framework"] = "Tensorflow"
    path.write_text(json.dumps(record))
    result = collect(sweep)
    assert "######## framework=pt device=cpu ########" in result.report
    assert "######## framework=tf device=cpu ########" in result.report
    assert result.report.count("ENVIRONMENT INFORMATION") == 2
    lines = (sweep / "inference_time.csv").read_text().splitlines()
    assert lines[0] == "model,batch_size,sequence_length,result,framework,device"
    assert "bert-base[hidden_size=384],8,8,0.0046,tf,cpu" in lines
    assert "framework,Tensorflow,tf,cpu" in (sweep / "env.csv").read_text().splitlines()


def test_an_empty_folder_gets_a_message_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no record.json under {tmp_path}" in err
    assert "Traceback" not in err
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_only_record_files_are_read_never_folder_names(sweep):
    (sweep / "seq=8").rename(sweep / "renamed-by-the-user")
    result = collect(sweep, write=False)
    assert [r.cell.sequence_length for r in result.records][:2] == [8, 32]
