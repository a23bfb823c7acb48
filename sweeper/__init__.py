"""sweeper: Hydra-configured benchmark sweeps of transformer models (PyTorch and TensorFlow).

From Python (a notebook, a script)::

    import sweeper
    frame = sweeper.run(["model=bert_base", "seq=8,32,128"])   # python -m sweeper ... -m
    frame = sweeper.load("outputs/2026-11-29/12-00-00")        # a sweep folder's records
    sweeper.scaling(frame)                                     # how time and memory grow
    sweeper.compare("outputs/base", "outputs/new")             # cell by cell, with significance

Importing the package is light: pandas, scipy and Hydra are imported by the functions that
need them, and no framework ever is (only the worker processes import torch or TensorFlow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    from os import PathLike

    import pandas as pd

__version__ = "0.2.0"
__all__ = ["__version__", "compare", "load", "run", "scaling"]


def load(
    sweep_dir: Union[str, PathLike], samples: bool = False, all_records: bool = False
) -> pd.DataFrame:
    """A sweep folder's records as a tidy DataFrame: one row per cell and mode.

    Columns: model, framework, device, batch_size, sequence_length, one column per option that
    varies across the cells (``framework.use_xla``, ``seed``, ...), mode, status, median_s,
    ci95_low_s, ci95_high_s, ci95_halfwidth_pct, iqr_s, iqr_pct, min_s, mean_s, timed_calls, noisy,
    noise_reasons, first_call_s, peak_mib, peak_increase_mib, peak_increase_anon_mib,
    gpu_peak_increase_mib, baseline_mib, memory_source, error, label (the tables' row name) and
    record (the record's path); ``samples=True`` adds samples_s (each row's raw timed calls). Only
    the records of the folder's latest run (its ``sweep.json``) unless ``all_records``;
    ``frame.attrs`` says what was left out (``left_out``) and how many cells have no record yet
    (``missing_cells`` of ``total_cells``, with the ``resume_command``). See sweeper.report.frame.
    """
    from .report.frame import load as load_frame

    return load_frame(sweep_dir, samples=samples, all_records=all_records)


def scaling(frame_or_dir: Union[pd.DataFrame, str, PathLike]) -> pd.DataFrame:
    """How cost grows along the sweep: per line (model, framework, device, batch, options, mode)
    the exponent of time and of the memory increase against sequence length (or batch size,
    when the sweep has more of them), with R², and the MB each token adds. See
    sweeper.report.scaling."""
    import pandas as pd

    from .report.scaling import scaling as fits

    frame = frame_or_dir if isinstance(frame_or_dir, pd.DataFrame) else load(frame_or_dir)
    return fits(frame)


def compare(
    base_dir: Union[str, PathLike],
    new_dir: Union[str, PathLike],
    allow: Sequence[str] = (),
) -> pd.DataFrame:
    """Two sweeps cell by cell: the ratio of medians new/base with its bootstrap 95 % CI, the
    Mann–Whitney p-value, a verdict (``better``, ``worse``, ``not significant``, ``newly
    failing``, ``fixed``, ``not comparable``, ...) and the peak memory of each. ``allow``: the
    environment keys that may differ (e.g. ``transformers_version``). See
    sweeper.report.compare; ``python -m sweeper.compare`` adds the CI gates."""
    import pandas as pd

    from .report.compare import compare_dirs

    comparison = compare_dirs(base_dir, new_dir, allow)
    rows = [
        {
            "cell": change.label,
            "mode": change.mode,
            "verdict": change.mark.value,
            "base_median_s": change.base_median_s,
            "new_median_s": change.new_median_s,
            "ratio": change.ratio,
            "ratio_low": change.ratio_low,
            "ratio_high": change.ratio_high,
            "p_value": change.p_value,
            "base_peak_mib": change.base_peak_mib,
            "new_peak_mib": change.new_peak_mib,
            "memory_change": change.memory_change,
            "detail": change.detail,
        }
        for change in comparison.changes
    ]
    frame = pd.DataFrame(rows)
    frame.attrs["config_differences"] = comparison.config_differences
    return frame


def run(
    overrides: Sequence[str] = (),
    sweep_dir: Optional[Union[str, PathLike]] = None,
    config_dir: Optional[Union[str, PathLike]] = None,
) -> pd.DataFrame:
    """Run a sweep as ``python -m sweeper OVERRIDES -m`` does and return :func:`load` of it.

    The same machinery as the command line, in this process: Hydra's multirun, the validating
    sweeper (bad input raises ValueError with the command line's message before any cell
    runs), the callbacks (progress lines, tables, CSV files, plots), the same folders and
    records; each cell is still measured in fresh worker processes. ``sweep_dir`` sets
    ``hydra.sweep.dir`` (run again with the same folder to resume); ``config_dir`` adds a
    folder of your own presets, as ``--config-dir`` does. Failed cells do not raise: their
    status is in the frame. Hydra configures logging for the run, as the command line does;
    the zygote processes (one per framework, which imported it once) stay for the next run
    and end with this process.
    """
    import os
    from pathlib import Path

    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from .config import CONF_DIR
    from .config.errors import explain
    from .engine import app as hydra_entry

    version.setbase("1.3")  # as @hydra.main(version_base="1.3") in sweeper.engine.app
    overrides = [str(o) for o in overrides]
    if sweep_dir is not None:
        overrides.append(f"hydra.sweep.dir={Path(sweep_dir).resolve()}")
    search_path = create_config_search_path(f"file://{CONF_DIR}")
    if config_dir is not None:
        folder = os.path.abspath(config_dir)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"config_dir={config_dir} is not a folder")
        search_path.prepend(
            provider="command-line",
            path=f"file://{folder}",
            anchor=SearchPathQuery(provider="schema"),
        )
    folders = []

    def task(cfg):
        folders.append(HydraConfig.get().sweep.dir)
        return hydra_entry.hydra_app(cfg)

    GlobalHydra.instance().clear()
    try:
        hydra = Hydra.create_main_hydra2(task_name="sweeper", config_search_path=search_path)
        hydra.multirun(config_name="config", task_function=task, overrides=overrides)
    except SystemExit as exc:  # the end-of-run callback: 1 = some cell failed, recorded
        if exc.code not in (0, 1, None):
            raise
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        raise ValueError(message) from None
    finally:
        GlobalHydra.instance().clear()
    if not folders:
        raise RuntimeError("the sweep ran no job")
    return load(Path(folders[0]).resolve())
