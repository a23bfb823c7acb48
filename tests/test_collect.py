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


# -- every row says what it measured (issue 8.1) ---------------------------------------------------

from sweeper.report.tables import fit_labels  # noqa: E402
from tests.helpers import table_rows  # noqa: E402
from tests.synthetic import make_record, write_manifest, write_record, write_sweep  # noqa: E402


def _rows(report: str, section: str = "INFERENCE - SPEED - RESULT") -> list:
    return [row.split("  ")[0].strip() or row.strip() for row in table_rows(report, section)]


def _labels(report: str) -> list:
    return [row[:30].strip() for row in table_rows(report, "INFERENCE - SPEED - RESULT")]


@pytest.mark.parametrize(
    "framework, config, first, second",
    [
        ("tf", {"framework": {"name": "tf", "use_xla": True}}, "use_xla=true", "use_xla=false"),
        (
            "tf",
            {"framework": {"name": "tf", "eager_mode": True}},
            "eager_mode=true",
            "eager_mode=false",
        ),
        ("pt", {"framework": {"name": "pt", "fp16": True}}, "fp16=true", "fp16=false"),
        (
            "pt",
            {"framework": {"name": "pt", "torchscript": True}},
            "torchscript=true",
            "torchscript=false",
        ),
        ("pt", {"seed": 1}, "seed=1", "seed=0"),
        (
            "pt",
            {"only_pretrain_model": True},
            "only_pretrain_model=true",
            "only_pretrain_model=false",
        ),
        ("pt", {"timing": {"max_time_s": 20.0}}, "max_time_s=20.0", "max_time_s=10.0"),
    ],
)
def test_an_option_that_varies_labels_its_rows_and_gets_a_csv_column(
    tmp_path, framework, config, first, second
):
    """`framework.use_xla=true,false -m` printed two identical `bert-base 8 128` rows."""
    key = next(iter(config))
    base = {
        "framework": {"name": framework, "use_xla": False, "eager_mode": False}
        if framework == "tf"
        else {"name": framework, "fp16": False, "torchscript": False},
        "seed": 0,
        "only_pretrain_model": False,
        "timing": {"max_time_s": 10.0},
    }
    changed = {
        **base,
        key: {**base[key], **config[key]} if isinstance(config[key], dict) else config[key],
    }
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            ("a", make_record(framework=framework, config=changed, sweep_index=0)),
            ("b", make_record(framework=framework, config=base, sweep_index=1)),
        ],
    )
    result = collect(sweep)
    labels = [f"bert-base {first}", f"bert-base {second}"]
    shown = fit_labels(labels)  # only_pretrain_model's labels are too long: shortened, unique
    assert _labels(result.report) == [shown[label] for label in labels]
    assert len(set(shown.values())) == 2
    lines = (sweep / "inference_time.csv").read_text().splitlines()
    column = key if key != "framework" else f"framework.{first.split('=')[0]}"
    column = column if key != "timing" else "timing.max_time_s"
    assert lines[0] == f"model,batch_size,sequence_length,result,{column}"
    assert lines[1].startswith("bert-base,8,8,") and lines[1].endswith("," + first.split("=")[1])
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert summary[0].split(",")[5] == column


def test_a_model_key_varying_under_one_name_is_shown(tmp_path):
    """`model.name=tiny-bert model.hidden_size=32,64` gave two rows called tiny-bert."""
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            (
                str(h),
                make_record(
                    model="tiny-bert",
                    config={"model": {"name": "tiny-bert", "hidden_size": h}},
                    sweep_index=i,
                ),
            )
            for i, h in enumerate((32, 64))
        ],
    )
    result = collect(sweep)
    assert _labels(result.report) == ["tiny-bert[hidden_size=32]", "tiny-bert[hidden_size=64]"]
    assert "tiny-bert[hidden_size=64],8,8," in (sweep / "inference_time.csv").read_text()


def test_different_models_are_not_labelled_with_their_own_keys(tmp_path):
    """bert-base and bert-384-hid differ in hidden_size by definition: the labels say so."""
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            (
                "a",
                make_record(
                    model="bert-base", config={"model": {"name": "bert-base", "hidden_size": 768}}
                ),
            ),
            (
                "b",
                make_record(
                    model="bert-384-hid",
                    config={"model": {"name": "bert-384-hid", "hidden_size": 384}},
                    sweep_index=1,
                ),
            ),
        ],
    )
    assert _labels(collect(sweep).report) == ["bert-base", "bert-384-hid"]
    assert (sweep / "inference_time.csv").read_text().splitlines()[0] == (
        "model,batch_size,sequence_length,result"
    )


def test_keys_that_do_not_change_the_measurement_leave_the_old_format(tmp_path):
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            ("a", make_record(seq=8, config={"force": True, "timeout_s": 60})),
            ("b", make_record(seq=32, config={"force": False, "timeout_s": 1800}, sweep_index=1)),
        ],
    )
    assert _labels(collect(sweep).report) == ["bert-base", "bert-base"]
    assert (sweep / "inference_time.csv").read_text().splitlines()[0] == (
        "model,batch_size,sequence_length,result"
    )


def test_a_key_only_one_framework_has_does_not_label_the_other(tmp_path):
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            (
                "pt",
                make_record(framework="pt", config={"framework": {"name": "pt", "fp16": False}}),
            ),
            (
                "tf",
                make_record(
                    framework="tf",
                    config={"framework": {"name": "tf", "use_xla": False}},
                    sweep_index=1,
                ),
            ),
        ],
    )
    report = collect(sweep).report
    # speed and memory tables of each framework: plain bert-base rows, no fp16=/use_xla= suffix
    assert report.count("          bert-base                  8               8 ") == 4
    assert "fp16=" not in report and "use_xla=" not in report


def test_labels_longer_than_30_characters_stay_unique(sweep):
    """`bert-base[hidden_size=384,num_hidden_layers=6]` and `...=12]` printed the same."""
    labels = [
        "bert-base[hidden_size=384,num_hidden_layers=6]",
        "bert-base[hidden_size=384,num_hidden_layers=12]",
    ]
    for folder, label in zip(("seq=8", "seq=32"), labels):
        path = sweep / folder / "record.json"
        record = json.loads(path.read_text())
        record["cell"]["model"] = label
        record["cell"]["sequence_length"] = 8
        path.write_text(json.dumps(record))
    report = collect(sweep, write=False).report
    rows = table_rows(report, "INFERENCE - SPEED - RESULT")
    assert len(set(rows)) == len(rows)  # no two rows alike
    assert [row[:30] for row in rows[:2]] == [
        "bert-base[hidd~35b3~_layers=6]",
        "bert-base[hidd~fa4a~layers=12]",
    ]
    short = fit_labels(labels)
    assert all(len(s) == 30 for s in short.values())
    # spelt out under the table, once per table that shows them
    assert f"{short[labels[0]]} = {labels[0]}" in report
    collect(sweep)  # the CSV files keep the whole label (quoted: it has a comma)
    csv_text = (sweep / "inference_time.csv").read_text()
    assert '"bert-base[hidden_size=384,num_hidden_layers=12]",8,8,0.0083' in csv_text


def test_fit_labels_cuts_as_before_when_that_stays_unique():
    assert fit_labels(["m" * 40, "short"]) == {"m" * 40: "m" * 30, "short": "short"}


# -- stale records do not leak into the tables (issue 8.2) ---------------------------------------


def _two_cells():
    return [
        ("seq=8", make_record(seq=8, sweep_index=0)),
        ("seq=32", make_record(seq=32, samples=[0.02] * 6, sweep_index=1)),
    ]


def test_records_outside_the_latest_run_are_left_out_and_named(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", _two_cells())
    write_manifest(sweep, _two_cells())
    # An earlier run with another setting, and a stale failure: neither is this run's.
    old = make_record(
        seq=8, config={"timing": {"max_time_s": 20.0}}, finished_utc="2026-11-28T10:00:00+00:00"
    )
    write_record(sweep, "seq=8,timing.max_time_s=20", old)
    failed = make_record(seq=128, status="oom", error="MemoryError")
    write_record(sweep, "seq=128", failed)
    result = collect(sweep)
    assert [r.cell.sequence_length for r in result.records] == [8, 32]
    assert _labels(result.report) == ["bert-base", "bert-base"]
    assert result.exit_code == 0  # the stale oom record does not fail the sweep
    assert "Left out 2 records: not part of the latest run of this sweep folder" in result.report
    assert "seq=128/record.json, seq=8,timing.max_time_s=20/record.json" in result.report
    assert f"python -m sweeper.collect --all {sweep}" in result.report
    # --all shows every record: the old setting is then a varying option
    everything = collect(sweep, write=False, use_manifest=False)
    assert len(everything.records) == 4 and everything.exit_code == 1
    assert "bert-base max_time_s=20.0" in _labels(everything.report)


def test_a_folder_reused_for_another_sweep_does_not_mix_cells(tmp_path):
    """Re-using a bert-base sweep's folder for distilbert printed "3 cells: 3 ok"."""
    sweep = write_sweep(tmp_path / "sweep", _two_cells())
    distil = make_record(model="distilbert-base", config={"model": {"name": "distilbert-base"}})
    write_record(sweep, "model=distilbert_base", distil)
    write_manifest(sweep, [("model=distilbert_base", distil)])
    result = collect(sweep)
    assert [r.cell.model for r in result.records] == ["distilbert-base"]
    assert "1 cells: 1 ok" in result.report
    assert "Left out 2 records: not part of the latest run" in result.report


def test_a_job_folder_holding_another_config_is_missing_not_shown(tmp_path):
    cells = _two_cells()
    sweep = write_sweep(tmp_path / "sweep", cells)
    rerun = make_record(seq=32, config={"seed": 1})
    write_manifest(sweep, [cells[0], ("seq=32", rerun)])
    result = collect(sweep)
    assert [r.cell.sequence_length for r in result.records] == [8]
    assert "measured another config than the latest run asks for" in result.report
    assert result.missing_count == 1


def test_without_a_manifest_the_newest_of_two_identical_cells_wins(tmp_path):
    older = make_record(seq=8, samples=[0.05] * 6, finished_utc="2026-11-28T10:00:00+00:00")
    newer = make_record(seq=8, samples=[0.01] * 6, finished_utc="2026-11-29T10:00:00+00:00")
    sweep = write_sweep(tmp_path / "sweep", [("copy-1", older), ("copy-2", newer)])
    result = collect(sweep)
    assert len(result.records) == 1 and result.records[0].time("inference").median_s == 0.01
    assert (
        "Left out 1 record: an older measurement of the same cell and config as "
        "copy-2/record.json: copy-1/record.json"
    ) in result.report


def test_a_broken_manifest_is_said_and_every_record_shown(sweep):
    (sweep / "sweep.json").write_text("{not json")
    result = collect(sweep, write=False)
    assert len(result.records) == 5
    assert "ignored a broken manifest, showing every record" in result.report


# -- a partial sweep says what is missing (issue 9.4, the collector's part) ----------------------


def test_a_partial_sweep_counts_the_cells_without_a_record_and_says_how_to_resume(tmp_path, capsys):
    cells = _two_cells()
    sweep = write_sweep(tmp_path / "sweep", cells[:1])
    command = f"python -m sweeper seq=8,32,128 hydra.sweep.dir={tmp_path / 'sweep'} -m"
    write_manifest(sweep, cells, command=command, total=3)
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"2 of 3 cells have no record yet; resume with: {command}")


def test_the_empty_folder_hint_is_a_command_that_runs(tmp_path, capsys):
    """It suggested `python -m sweeper ... -m hydra.sweep.dir=...`: overrides after -m fail."""
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"(python -m sweeper OVERRIDES hydra.sweep.dir={tmp_path} -m)" in err


def test_a_varying_model_key_joins_the_bracket_of_a_label_that_has_one(tmp_path):
    label = "bert-base[hidden_size=384]"
    records = [
        (
            str(n),
            make_record(model=label, config={"model": {"num_hidden_layers": n}}, sweep_index=n),
        )
        for n in (2, 4)
    ]
    report = collect(write_sweep(tmp_path / "sweep", records), write=False).report
    full = [f"bert-base[hidden_size=384,num_hidden_layers={n}]" for n in (2, 4)]
    shown = fit_labels(full)
    assert _labels(report) == [shown[f] for f in full] and len(set(shown.values())) == 2
    assert f"{shown[full[1]]} = {full[1]}" in report
