"""Records and manifests made by hand for the report tests: known samples, known differences.

Every record starts from the committed golden record ``tests/data/golden/seq=8`` (a real record's
layout) with inference only; its statistics are derived from the samples given, by the same code
the worker uses (sweeper.measure.stats.TimeStats), so they agree with each other.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from sweeper.config.job import config_identity
from sweeper.manifest import ManifestJob, new_manifest
from sweeper.measure.stats import TimeStats
from sweeper.record import Cell

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
TARGET_CI_PCT = 2.0


def golden(name: str = "seq=8") -> Dict[str, Any]:
    return json.loads((GOLDEN / name / "record.json").read_text())


def make_record(
    model: str = "bert-base",
    batch: int = 8,
    seq: int = 8,
    framework: str = "pt",
    samples: Sequence[float] = (0.010, 0.0101, 0.0099, 0.0100, 0.0102, 0.0098),
    peak_mib: float = 1000.0,
    status: str = "ok",
    error: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    environment: Optional[Mapping[str, Any]] = None,
    finished_utc: str = "2026-11-29T12:00:05+00:00",
    sweep_index: int = 0,
) -> Dict[str, Any]:
    """A record of one inference cell; ``config`` entries are merged into the golden config."""
    record = copy.deepcopy(golden())
    record["cell"] = {
        "model": model,
        "framework": framework,
        "device": "cpu",
        "batch_size": batch,
        "sequence_length": seq,
    }
    merged = {**record["config"], "batch": batch, "seq": seq, "training": False}
    for key, value in (config or {}).items():
        if isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    record["config"] = merged
    record["config_sha256"] = config_identity(merged)
    record["environment"].update(environment or {})
    record["finished_utc"] = finished_utc
    record["sweep_index"] = sweep_index
    record["status"] = status
    record["error"] = error
    if status == "ok":
        timing = TimeStats(list(samples), target_ci_pct=TARGET_CI_PCT, stop_reason="converged")
        record["results"] = {
            "inference": {
                "status": "ok",
                "error": None,
                "time": timing.to_dict(),
                "memory": {
                    "headline_mib": peak_mib,
                    "headline_source": "peak_rss",
                    "peak_rss_mib": peak_mib,
                    "baseline_rss_mib": peak_mib - 100.0,
                    "peak_increase_mib": 100.0,
                },
            }
        }
    else:
        record["results"] = {"inference": {"status": status, "error": error}}
    return record


def write_record(sweep_dir: Path, folder: str, record: Mapping[str, Any]) -> Path:
    path = Path(sweep_dir) / folder / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def write_sweep(sweep_dir: Path, records: Iterable[Tuple[str, Mapping[str, Any]]]) -> Path:
    """Write ``(folder, record)`` pairs under ``sweep_dir`` (no manifest)."""
    for folder, record in records:
        write_record(sweep_dir, folder, record)
    return Path(sweep_dir)


def write_manifest(
    sweep_dir: Path,
    jobs: Iterable[Tuple[str, Mapping[str, Any]]],
    command: str = "python -m sweeper seq=8,32 hydra.sweep.dir=SWEEP -m",
    total: Optional[int] = None,
) -> None:
    """A manifest listing ``(folder, record)`` jobs, as the validating sweeper writes it."""
    entries = [
        ManifestJob(
            folder=folder,
            overrides=list(record.get("overrides", [])),
            identity=record["config_sha256"],
            cell=Cell(**record["cell"]),
        )
        for folder, record in jobs
    ]
    manifest = new_manifest(sweep_dir, command, [], entries)
    if total is not None:
        manifest.total_jobs = total
    manifest.write(sweep_dir)
