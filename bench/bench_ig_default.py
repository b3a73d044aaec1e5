"""analyze.py's IG, the default (every layer to δ ≤ 1 %) vs the old default (fixed Gauss–Legendre m = 50), side by side.

Both run what `analyze.py` runs per question (`AttributionSystem.explain_example`: the run's own post-processing picks
the window and span, then layer-wise IG on every layer) on the same first N dev questions of a finished training
run, in one process, taking turns per question (adaptive first, then fixed first) so that a shared machine's load
drifts hit both alike and neither side always meets a new question's shapes first. Lightning's loop and the shard
writer, the same for both, are left out. Reported: IG seconds of each and their ratio, and per layer the δ
distribution and the gradient evaluations; the share of (example, layer) pairs with δ ≤ 1 %.

    python -m bench.bench_ig_default --run runs/NAME --examples 40 --json out.json
Interrupted (Ctrl-C, SIGTERM), it reports the questions both sides finished, with "partial" saying how many of how many.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np


def layer_table(records, tolerance: float) -> dict:
    delta = np.stack([r.delta for r in records])  # [n, L]
    steps = np.stack([r.steps for r in records])  # [n, L]
    return {"layers": list(records[0].layers),
            "delta_median": np.median(delta, 0).tolist(), "delta_p95": np.percentile(delta, 95, 0).tolist(),
            "delta_max": delta.max(0).tolist(), "within_tolerance_share": (delta <= tolerance).mean(0).tolist(),
            "within_tolerance_all": float((delta <= tolerance).mean()),
            "steps_median": np.median(steps, 0).tolist(), "steps_max": steps.max(0).tolist(),
            "steps_mean": steps.mean(0).tolist()}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> dict:
    import time

    import torch

    from lit_rcqa.process import read_all_weights, release_freed_memory, write_json_atomic
    from lit_rcqa.attribution.integrated_gradients import IGSettings
    from lit_rcqa.attribution.layers import EncoderAdapter
    from lit_rcqa.attribution.run import _ExampleItems, load_model, open_run
    from lit_rcqa.attribution.system import AttributionSystem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--max-steps", type=int, default=257)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = open_run(args.run)
    model = load_model(run)
    read_all_weights(model)
    dm = run.data_module(args.examples)
    dm.setup("validate")
    split = dm.eval_split()
    items = _ExampleItems(split, list(range(len(split.examples))))
    layers = list(range(EncoderAdapter(model).num_layers + 1))
    sides = {"adaptive": IGSettings(tolerance=args.tolerance, max_steps=args.max_steps),
             "fixed_m50": IGSettings(steps=50, method="gausslegendre")}
    systems = {name: AttributionSystem(model, dm.tokenizer, layers, settings, post=run.postprocess, hidden_examples=0)
               for name, settings in sides.items()}
    per_question = {name: [] for name in sides}  # IG seconds per question
    results = {name: [] for name in sides}
    signal.signal(signal.SIGTERM, _interrupt)
    done = 0
    try:
        for k in range(len(items)):
            item = items[k]
            for name in list(systems) if k % 2 == 0 else list(systems)[::-1]:  # who goes first takes turns
                t0 = time.perf_counter()
                results[name].append(systems[name].explain_example(item))
                per_question[name].append(time.perf_counter() - t0)
                release_freed_memory()
            done = k + 1
            if done % 5 == 0 or done == len(items):
                a, f = sum(per_question["adaptive"]), sum(per_question["fixed_m50"])
                print(f"{done} questions: adaptive {a:.1f} s, fixed m=50 {f:.1f} s ({f / max(a, 1e-9):.2f}x)", flush=True)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: report the questions both sides finished, marked partial
        print(f"interrupted after {done} of {len(items)} questions: reporting those, marked partial", flush=True)
        if done == 0:
            raise SystemExit(1)
    seconds = {name: sum(per_question[name][:done]) for name in sides}
    results = {name: results[name][:done] for name in sides}
    result = {"run": str(run.run_dir), "examples": done, "threads": args.threads,
              "tolerance": args.tolerance, "max_steps": args.max_steps, "seconds": seconds,
              "speedup": seconds["fixed_m50"] / seconds["adaptive"],
              "tokens_median": float(np.median([len(r.tokens) for r in results["adaptive"]]))}
    if done < len(items):
        result["partial"] = {"examples_asked": len(items), "examples_done": done}
    for name in sides:
        result[name] = layer_table(results[name], args.tolerance)
        flags = [r.converged for r in results[name] if r.converged is not None]
        if flags:
            result[name]["flagged_pairs"] = int(sum((~f).sum() for f in flags))
    print(json.dumps(result, indent=1))
    if args.json:
        write_json_atomic(Path(args.json), result)
    return result


if __name__ == "__main__":
    main()
