"""Which model types of transformers run in sweeper: one tiny inference cell each, per framework.

    python bench/model_coverage.py                      # every model type, PyTorch and TensorFlow
    python bench/model_coverage.py --types bert gpt2 --frameworks pt --no-write

Every model type transformers knows is tried through sweeper's own path, as
``model=auto model.model_type=TYPE`` with tiny sizes given through the canonical keys the class
takes (TINY below): the Job (keys checked against the config class), its cell checks, the
framework backend's build and one inference call, batch 1, seq 16. One process per framework
imports the framework once and forks a child per model type, with a time limit (--limit-s) and an
address-space cap, so the whole list takes minutes, not hours. A type a framework has no
base-model class for is not tried (transformers' auto tables say so). A coverage check, not a
timing benchmark: no time is reported.

Writes bench/results/model_coverage.json (every outcome and its full reason),
bench/model_coverage.md (one row per model type) and the summary between the
``<!-- model-coverage -->`` markers in README.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "model_coverage.json"
TABLE = REPO / "bench" / "model_coverage.md"
README = REPO / "README.md"
MARKERS = ("<!-- model-coverage -->", "<!-- /model-coverage -->")

# Tiny sizes, set through these names wherever the config class takes them (a key, an alias or
# an attribute derived from one), and in each of its nested configs (a multimodal model's
# text_config and vision_config). Hidden 128 over 2 heads leaves 64 per head: rotary families
# (GPT-J's rotary_dim=64) need that much. Vocabulary and other keys keep the class's defaults.
TINY = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,  # grouped-query families: one key/value head
    "intermediate_size": 256,
}
BATCH, SEQ = 1, 16
LIMIT_S = 90  # per model type and framework: import of its modules, build, one call
HEADROOM_MIB = 6144  # address space a child may add to the framework process's

OK, NOT_TRIED = "ok", "not tried"
LEGEND = (
    "*runs*: built and called; *no class*: transformers has no base-model class for that "
    "framework (not tried); *not a text model*: its `forward` takes no `input_ids`; *needs ...*: "
    "its `forward` requires inputs sweeper does not make; *refused*: the config class refused the "
    "values before any job (composite configs that need their parts named, values the tiny sizes "
    "make inconsistent, a backbone fetched from the Hub); *error*: any other exception, mostly "
    "multimodal models that need their image, keys the tiny sizes leave inconsistent, or a missing "
    "optional library; *oom*: over the 6 GiB cap (sizes the canonical keys do not reach)."
)
FRAMEWORKS = ("pt", "tf")


# ------------------------------------------------------------------------------------------------
# In the framework process


def _tiny_keys(cls: type) -> Dict[str, int]:
    """TINY's names that ``cls`` takes, one per key it sets (EfficientLoFTR aliases
    num_key_value_heads to num_attention_heads: the first name wins)."""
    from sweeper.config import catalog

    keys = catalog.config_keys(cls)
    chosen: Dict[str, int] = {}
    targets = set()
    for name, value in TINY.items():
        if keys.is_key(name):
            target = name
        else:
            target = keys.aliases.get(name) or catalog.derived_from(cls, name)
        if target and target not in targets:
            chosen[name] = value
            targets.add(target)
    return chosen


def _tiny(model_type: str) -> Dict[str, object]:
    """TINY for the model type's class and for each of its nested configs (a multimodal model's
    text_config and vision_config: model.text_config.hidden_size=128 and so on)."""
    from sweeper.config import catalog

    cls = catalog.config_class(model_type)
    tiny: Dict[str, object] = dict(_tiny_keys(cls))
    for name in catalog.config_keys(cls).sub_configs:
        sub = catalog.sub_config_class(cls, name, {})
        sub_tiny = _tiny_keys(sub) if sub else {}
        if sub_tiny:
            tiny[name] = sub_tiny
    return tiny


def _overrides(tiny: Dict[str, object], prefix: str = "model.") -> List[str]:
    out = []
    for name, value in tiny.items():
        if isinstance(value, dict):
            out += _overrides(value, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}={value}")
    return out


def _attempt(model_type: str, framework: str, base: Dict) -> Dict[str, str]:
    """One cell through sweeper's path; runs in a forked child."""
    from sweeper.config.job import cell_problem, make_job
    from sweeper.config.problems import InputError
    from sweeper.frameworks import CellError, load

    tiny = _tiny(model_type)
    data = dict(base, model={"model_type": model_type, **tiny}, batch=BATCH, seq=SEQ)
    try:
        job = make_job(data, _overrides(tiny))
    except InputError as exc:
        return {"status": "refused", "reason": str(exc)}
    problem = cell_problem(job)
    if problem is not None:
        return {"status": problem[0].value, "reason": problem[1]}
    backend = load(framework)(job.config)
    try:
        step = backend.build("inference")
        step()
        backend.sync()
    except CellError as exc:
        return {"status": "error", "reason": str(exc)}
    return {"status": OK, "reason": "", "class": type(backend.model).__name__}


def _child(model_type: str, framework: str, base: Dict, write_fd: int) -> None:
    code = 0
    try:
        with open(f"/proc/{os.getpid()}/status") as handle:
            vm_kib = int(handle.read().split("VmSize:")[1].split()[0])
        cap = vm_kib * 1024 + HEADROOM_MIB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))
        try:
            outcome = _attempt(model_type, framework, base)
        except MemoryError:
            outcome = {"status": "oom", "reason": f"over {HEADROOM_MIB} MiB"}
        except BaseException as exc:  # every failure is an outcome
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            oom = "can't allocate memory" in first  # the CPU allocator under the cap
            outcome = {
                "status": "oom" if oom else "error",
                "reason": f"over {HEADROOM_MIB} MiB" if oom else f"{type(exc).__name__}: {first}",
            }
        os.write(write_fd, json.dumps(outcome).encode())
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _collect(pid: int, read_fd: int, limit_s: float) -> Dict[str, str]:
    deadline = time.monotonic() + limit_s
    chunks: List[bytes] = []
    while True:
        ready, _, _ = select.select([read_fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"status": "timeout", "reason": f"over {limit_s:g} s"}
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if chunks:
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        return {"status": "killed", "reason": f"signal {os.WTERMSIG(status)}"}
    return {"status": "error", "reason": f"the child exited with {os.WEXITSTATUS(status)}"}


def serve(framework: str, model_types: List[str], limit_s: float) -> None:
    """Import the framework once, then fork a child per model type; print JSON lines."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)  # the JSON lines; all else goes to stderr
    os.dup2(2, 1)
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sweeper.config import CONF_DIR, catalog, schema
    from sweeper.frameworks import load

    load(framework)  # the import every child shares
    schema.register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=auto", f"framework={framework}"])
    base = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    for model_type in model_types:
        if catalog.base_class(model_type, framework) is None:
            outcome = {"status": NOT_TRIED, "reason": "no base-model class in this framework"}
        else:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                _child(model_type, framework, base, write_fd)
            os.close(write_fd)
            outcome = _collect(pid, read_fd, limit_s)
            os.close(read_fd)
        channel.write(json.dumps({"model_type": model_type, "framework": framework, **outcome}))
        channel.write("\n")


# ------------------------------------------------------------------------------------------------
# The driver


def run_framework(framework: str, model_types: List[str], limit_s: float) -> List[Dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    env.update({"USE_TF": "0", "USE_TORCH": "1"} if framework == "pt" else {})
    env.update(
        {"USE_TORCH": "0", "USE_TF": "1", "TF_CPP_MIN_LOG_LEVEL": "2"} if framework == "tf" else {}
    )
    cmd = [sys.executable, __file__, "--serve", framework, "--limit-s", str(limit_s), *model_types]
    outcomes = []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    log = RESULTS.with_name(f"model_coverage-{framework}.log")  # the frameworks' own chatter
    with (
        open(log, "w") as stderr,
        subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            outcome = json.loads(line)
            outcomes.append(outcome)
            print(
                f"{framework} {outcome['model_type']:<32} {outcome['status']:<9} "
                f"{outcome['reason'][:100]}",
                file=sys.stderr,
                flush=True,
            )
    return outcomes


def _short(outcome: Dict) -> str:
    """A reason short enough for a table cell, its kind first."""
    status, reason = outcome["status"], " ".join(outcome["reason"].split())
    if status == OK:
        return "ok"
    if status == NOT_TRIED:
        return "-"
    if "takes no input_ids" in reason:
        return "not a text model (no input_ids)"
    if " needs " in reason and "which sweeper does not make" in reason:
        return "needs " + reason.split(" needs ")[1].split(", which")[0]
    return f"{status}: {reason[:90]}{'...' if len(reason) > 90 else ''}".replace("|", "/")


def _kind(outcome: Dict) -> str:
    short = _short(outcome)
    if short in ("ok", "-") or short.startswith(("not a text model", "needs ")):
        return {"ok": "runs", "-": "no class"}.get(short, short.split(" (")[0].split(",")[0])
    return outcome["status"]


def summary(outcomes: List[Dict], version: str) -> str:
    frameworks = [f for f in FRAMEWORKS if any(o["framework"] == f for o in outcomes)]
    types = sorted({o["model_type"] for o in outcomes})
    lines = [
        f"`python bench/model_coverage.py` tried every model type of transformers {version} "
        f"({len(types)}) as `model=auto model.model_type=TYPE` with tiny canonical sizes, one "
        f"inference cell each (batch {BATCH}, seq {SEQ}); per type: "
        "[bench/model_coverage.md](bench/model_coverage.md).",
        "",
        "| outcome | "
        + " | ".join({"pt": "PyTorch", "tf": "TensorFlow"}[f] for f in frameworks)
        + " |",
        "|---|" + "---|" * len(frameworks),
    ]
    counts = {
        f: collections.Counter(_kind(o) for o in outcomes if o["framework"] == f)
        for f in frameworks
    }
    order = [
        "runs",
        "no class",
        "not a text model",
        "needs",
        "refused",
        "skipped",
        "error",
        "timeout",
        "oom",
        "killed",
    ]
    kinds = sorted(
        {k for c in counts.values() for k in c},
        key=lambda k: (order.index(k) if k in order else len(order), k),
    )
    for kind in kinds:
        lines.append(f"| {kind} | " + " | ".join(str(counts[f][kind]) for f in frameworks) + " |")
    lines += ["", LEGEND]
    return "\n".join(lines)


def table(outcomes: List[Dict], version: str) -> str:
    by_type: Dict[str, Dict[str, Dict]] = collections.defaultdict(dict)
    for outcome in outcomes:
        by_type[outcome["model_type"]][outcome["framework"]] = outcome
    frameworks = [f for f in FRAMEWORKS if any(o["framework"] == f for o in outcomes)]
    names = {"pt": "PyTorch", "tf": "TensorFlow"}
    lines = [
        f"# Model coverage: transformers {version}",
        "",
        "Written by `python bench/model_coverage.py` (see its docstring): one tiny inference cell "
        "per model type and framework through sweeper's own path. `-`: transformers has no "
        "base-model class for that framework.",
        "",
        "| model_type | " + " | ".join(names[f] for f in frameworks) + " |",
        "|---|" + "---|" * len(frameworks),
    ]
    for model_type in sorted(by_type):
        cells = [
            _short(by_type[model_type][f]) if f in by_type[model_type] else "" for f in frameworks
        ]
        lines.append(f"| {model_type} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", nargs="+", default=["pt", "tf"], choices=["pt", "tf"])
    parser.add_argument("--types", nargs="+", help="model types (default: all)")
    parser.add_argument("--limit-s", type=float, default=LIMIT_S)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--from-json", action="store_true", help="rewrite the tables from the JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("serve_types", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.serve_types, args.limit_s)
        return 0
    sys.path.insert(0, str(REPO))
    from sweeper.config import catalog

    model_types = args.types or catalog.model_types()
    version = catalog.transformers_module().__version__
    tic = time.perf_counter()
    if args.from_json:
        outcomes = json.loads(RESULTS.read_text())["outcomes"]
    else:
        outcomes = [o for f in args.frameworks for o in run_framework(f, model_types, args.limit_s)]
    text = summary(outcomes, version)
    print(text)
    if not args.from_json:
        print(f"\n{len(outcomes)} attempts in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    if args.no_write:
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not args.from_json:
        data = {"transformers_version": version, "tiny": TINY, "outcomes": outcomes}
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    TABLE.write_text(table(outcomes, version))
    readme = README.read_text()
    start, end = readme.find(MARKERS[0]), readme.find(MARKERS[1])
    if start >= 0 and end > start:
        README.write_text(readme[: start + len(MARKERS[0])] + "\n" + text + "\n" + readme[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
