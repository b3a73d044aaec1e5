"""Layer-wise IG, ours (prefix-cached) vs Captum LayerIntegratedGradients looped over the layers.

Same model (the embedded MiniLM-L6-H384 with a seeded QA head), same real SQuAD dev inputs (~180 tokens,
unpadded), same rule and steps, same target, same threads, one batch of m rows per layer on both sides.
After a warm-up the two sides alternate A B A B; medians of seconds per example (all layers) are reported.

    python -m bench.bench_ig            # 3 examples x 2 rounds, m = 50 Gauss-Legendre, all 7 layers
    python -m bench.bench_ig --quick    # 1 example x 1 round
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

from bench.references import captum_layer_ig
from lit_rcqa.attribution.integrated_gradients import IGSettings, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter
from lit_rcqa.attribution.record import layer_name
from lit_rcqa.paths import SHARED_DATA, embedded_model_dir


def load_model(seed: int = 0):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    torch.manual_seed(seed)  # the QA head is freshly initialised: seed it
    path = str(embedded_model_dir())
    model = AutoModelForQuestionAnswering.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)


def squad_inputs(tokenizer, n: int, length: tuple[int, int] = (170, 190)) -> list[dict]:
    """The first n dev questions whose "[CLS] q [SEP] passage [SEP]" has a length in `length` (no truncation)."""
    with gzip.open(SHARED_DATA / "dev-v1.1.json.gz", "rt", encoding="utf-8") as f:
        articles = json.load(f)["data"]
    found = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                enc = tokenizer(qa["question"], paragraph["context"], return_tensors="pt")
                if length[0] <= enc["input_ids"].shape[1] <= length[1]:
                    found.append({"id": qa["id"], "input_ids": enc["input_ids"][0],
                                  "token_type_ids": enc["token_type_ids"][0]})
                    if len(found) == n:
                        return found
    return found


def run_ours(adapter, example, settings) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = integrated_gradients(adapter, example["input_ids"], token_type_ids=example["token_type_ids"],
                                  layers="all", settings=settings)
    return time.perf_counter() - t0, result


def run_captum(model, adapter, example, span, steps, method) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    importance = [captum_layer_ig(model, adapter.layer_module(i), example["input_ids"], example["token_type_ids"],
                                  span, steps=steps, method=method).norm(dim=-1).numpy()
                  for i in range(adapter.num_layers + 1)]
    return time.perf_counter() - t0, np.stack(importance)  # [n_layers, T]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 example, 1 timed round")
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="timed A B rounds per example")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--method", default="gausslegendre")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tolerance", type=float, default=None,
                        help="also run ours with this accuracy target and report the steps used per layer")
    parser.add_argument("--refine-method", default="gausslegendre", help="schedule for --tolerance")
    args = parser.parse_args(argv)
    if args.quick:
        args.examples, args.rounds = 1, 1
    torch.set_num_threads(args.threads)

    model, tokenizer = load_model()
    adapter = EncoderAdapter(model)
    examples = squad_inputs(tokenizer, args.examples)
    n_layers = adapter.num_layers + 1
    ours_s, captum_s, agreement, deltas, tolerance_runs = [], [], [], [], []
    for example in examples:
        T = int(example["input_ids"].shape[0])
        # our default memory budget gives one chunk of m rows per layer here, as Captum's internal_batch_size=None
        settings = IGSettings(steps=args.steps, method=args.method)
        warm = IGSettings(steps=4, method=args.method)
        _, result = run_ours(adapter, example, warm)  # warm-up, and the span both sides explain
        span = (result.pred_start, result.pred_end)
        run_captum(model, adapter, example, span, 4, args.method)  # warm-up
        for _ in range(args.rounds):  # alternate A B
            seconds, result = run_ours(adapter, example, settings)
            ours_s.append(seconds)
            seconds, reference = run_captum(model, adapter, example, span, args.steps, args.method)
            captum_s.append(seconds)
        agreement.append(np.abs(result.importance - reference).max(axis=1) / np.abs(reference).max(axis=1))
        deltas.append(result.delta)
        if args.tolerance is not None:
            tol_settings = IGSettings(tolerance=args.tolerance, refine_method=args.refine_method)
            seconds, tol_result = run_ours(adapter, example, tol_settings)
            tolerance_runs.append((seconds, tol_result.steps, tol_result.delta))

    agreement, deltas = np.stack(agreement), np.stack(deltas)  # [n_examples, n_layers]
    ours, captum = statistics.median(ours_s), statistics.median(captum_s)
    report = {
        "model": "embedded MiniLM-L6-H384 (seeded QA head)", "examples": len(examples),
        "tokens": [int(e["input_ids"].shape[0]) for e in examples], "steps": args.steps, "method": args.method,
        "threads": args.threads, "ours_s_per_example": ours, "captum_s_per_example": captum,
        "speedup": captum / ours,
        "layers": [layer_name(i) for i in range(n_layers)],
        "max_rel_diff_per_layer": agreement.max(axis=0).tolist(),
        "median_delta_per_layer": np.median(deltas, axis=0).tolist(),
        "ours_min_s": min(ours_s), "captum_min_s": min(captum_s),
    }
    print(f"IG, all {n_layers} layers, m={args.steps} {args.method}, {len(examples)} example(s) of "
          f"{report['tokens']} tokens, {args.threads} threads, medians of {len(ours_s)} runs")
    print(f"{'':10}{'median s':>12}{'min s':>12}")
    print(f"{'ours':10}{ours:12.2f}{min(ours_s):12.2f}\n{'captum':10}{captum:12.2f}{min(captum_s):12.2f}")
    print(f"{'ratio':10}{captum / ours:11.2f}x{min(captum_s) / min(ours_s):11.2f}x")
    print(f"{'layer':12}{'max rel diff':>14}{'median delta':>14}")
    for name, diff, delta in zip(report["layers"], report["max_rel_diff_per_layer"],
                                 report["median_delta_per_layer"]):
        print(f"{name:12}{diff:14.2e}{delta:14.2e}")
    if tolerance_runs:
        steps = np.stack([r[1] for r in tolerance_runs])
        report["tolerance"] = {"tolerance": args.tolerance, "median_s": statistics.median(r[0] for r in tolerance_runs),
                               "steps_per_layer": steps.tolist(),
                               "max_delta_per_layer": np.stack([r[2] for r in tolerance_runs]).max(axis=0).tolist()}
        print(f"tolerance {args.tolerance} ({args.refine_method}): {report['tolerance']['median_s']:.2f} s/example, "
              f"steps per layer {steps.tolist()}, max delta {np.round(report['tolerance']['max_delta_per_layer'], 4)}")
    return report


if __name__ == "__main__":
    main()
