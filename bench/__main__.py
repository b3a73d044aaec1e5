"""Run every comparison, print one summary table, write bench/results/<date>-<host>.json.

    python -m bench --quick          # 2 CPU cores, under 20 minutes in all   (or: bench/run_all --quick)
    python -m bench --full           # a GPU machine
    python -m bench --quick --only metrics,train

Each bench module exposes `main(argv) -> dict`; a bench that fails is recorded with its error and the
others still run. Ratios are "times better than the reference" (see bench/result.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.result import result, row

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# name -> (module, title); cheapest first.
BENCHES = {
    "metrics": ("bench.bench_metrics", "EM/F1 evaluation, full v1.1 dev"),
    "tracking": ("bench.bench_tracking", "Tracker overhead of an offline W&B run"),
    "features": ("bench.bench_features", "Feature building and post-processing, full v1.1 dev"),
    "ig": ("bench.bench_ig", "Layer-wise Integrated Gradients, all layers"),
    "generic": ("bench.bench_generic", "Layer-wise IG: generic path vs family path"),
    "memory": ("bench.bench_memory", "Peak RSS under growth (N vs 10*N)"),
    "train": ("bench.bench_train", "Fine-tuning MiniLM on the SQuAD train subset"),
}


# Step 1: the benches written before the shared result shape, adapted to it.
def _features_result(r: dict) -> dict:
    rows = [row("feature building (features/s)", "features/s", r["features_per_s"], r["reference_features_per_s"]),
            row("post-processing (examples/s)", "examples/s", r["postprocess_examples_per_s"],
                r["reference_postprocess_examples_per_s"])]
    return result("features", BENCHES["features"][1], rows, r)


ADAPTERS = {"features": _features_result}


def bench_argv(name: str, size: str) -> list[str]:
    if name in ADAPTERS:  # these know --quick only; their defaults are the larger size
        return ["--quick"] if size == "quick" else []
    return [f"--{size}"]


# Step 2: the machine, as the results file records it.
def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"host": platform.node(), "cpu": cpu, "logical_cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_average_at_start"] = list(os.getloadavg())
    except ImportError:
        pass
    for package in ("transformers", "lightning", "torchmetrics", "captum"):
        try:
            info[package] = importlib.import_module(package).__version__
        except ImportError:
            info[package] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
    return info


# Step 3: run, tabulate, save.
def run_one(name: str, size: str) -> dict:
    module_name, title = BENCHES[name]
    print(f"\n=== {name}: {title} ({size}) ===", flush=True)
    start = time.perf_counter()
    try:
        out = importlib.import_module(module_name).main(bench_argv(name, size))
        if "rows" not in out:
            out = ADAPTERS[name](out)
    except Exception as err:  # one failing bench must not hide the others' numbers
        traceback.print_exc()
        out = result(name, title, [], {}, skipped=f"error: {type(err).__name__}: {err}")
    out["seconds"] = time.perf_counter() - start
    return out


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def summary_table(results: list[dict]) -> str:
    lines = [f"{'comparison':78} {'ours':>10} {'reference':>10} {'ratio':>8} {'target':>8} {'met?':>5}"]
    for res in results:
        if res["skipped"]:
            lines.append(f"{res['bench'] + ': ' + res['skipped']:78}"[:140])
        for r in res["rows"]:
            if r["ratio"] is None:  # a quality row: ours - reference, at least -tolerance
                ratio, target = f"{r['difference']:+.2f}", f">={r['target']:+.1f}"
            else:
                ratio = f"{r['ratio']:.2f}x"
                target = "-" if r["target"] is None else f">={r['target']:.2f}x"
            met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
            lines.append(f"{r['comparison'][:78]:78} {_fmt(r['ours']):>10} {_fmt(r['reference']):>10} {ratio:>8} "
                         f"{target:>8} {met:>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", action="store_true", help="2 CPU cores, under 20 minutes")
    size.add_argument("--full", action="store_true", help="a GPU machine, full sizes")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="folder for <date>-<host>.json")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    size_name = "quick" if args.quick else "full"

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # model-loading reports and bars would bury the numbers
    hf_logging.disable_progress_bar()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    info = machine()
    results = [run_one(name, size_name) for name in chosen]
    total = time.perf_counter() - t0

    print(f"\n=== summary ({size_name}, {total / 60:.1f} min; {info['cpu']}, {info['logical_cores']} cores, "
          f"torch {info['torch']}, {info['torch_threads']} threads) ===")
    print(summary_table(results))
    report = {"size": size_name, "started": started, "seconds": total, "machine": info, "results": results}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{time.strftime('%Y-%m-%d')}-{info['host']}.json"
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"results: {path}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
