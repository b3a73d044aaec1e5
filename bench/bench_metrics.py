"""Evaluation speed: our SquadMetrics vs torchmetrics' SQuAD metric on the full SQuAD v1.1 dev set.

    python -m bench.bench_metrics                  # 5 timed A B rounds after a warm-up
    python -m bench.bench_metrics --quick          # 3 rounds
    python -m bench.bench_metrics --questions 50   # a toy size (the smoke test)

Both sides score the same predictions: each dev question's first gold answer, perturbed by a seeded
rule (kept, re-cased with an article and punctuation, last word dropped, next context word added,
another question's answer, empty). Each side gets its inputs in its own format, built once, outside
the timing; one timed call = update() with every question + compute(). The values must agree to
1e-9: torchmetrics sums in float32 by default, so the equality check runs it once more with float64
states (the float32 deviation is reported).
"""

from __future__ import annotations

import argparse
import random
import re

import torch

from bench.result import median, result, row, skipped, timed
from lit_rcqa.paths import SHARED_DATA

TITLE = "EM/F1 evaluation, full v1.1 dev"


# Step 1: gold-perturbed predictions (deterministic for a seed).
def perturb(answer: str, context: str, other: str, rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return answer
    if kind == 1:
        return f"The {answer.upper()}."
    if kind == 2:
        words = answer.split()
        return " ".join(words[:-1]) if len(words) > 1 else ""
    if kind == 3:
        after = context[context.find(answer) + len(answer):] if answer in context else ""
        following = re.findall(r"\S+", after)[:1]
        return " ".join([answer, *following])
    if kind == 4:
        return other
    return ""


def make_inputs(examples, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    golds = [[a.text for a in ex.answers] for ex in examples]
    preds = [perturb(g[0], ex.context, golds[rng.randrange(len(golds))][0], rng) for ex, g in zip(examples, golds)]
    return preds, golds


# Step 2: the two sides, each on its own input format.
def run_ours(preds: list[str], golds: list[list[str]]) -> dict[str, float]:
    from lit_rcqa.evaluation.metrics import SquadMetrics

    metric = SquadMetrics()
    metric.update(preds, golds)
    out = metric.compute()
    return {"exact_match": float(out["exact_match"]), "f1": float(out["f1"])}


def run_torchmetrics(tm_preds: list[dict], tm_targets: list[dict], dtype: torch.dtype = torch.float32) -> dict[str, float]:
    from torchmetrics.text import SQuAD

    metric = SQuAD()
    previous = torch.get_default_dtype()
    if dtype != torch.float32:
        metric.set_dtype(dtype)  # its states; its per-question tensors follow the default dtype
        torch.set_default_dtype(dtype)
    try:
        metric.update(tm_preds, tm_targets)
        out = metric.compute()
    finally:
        torch.set_default_dtype(previous)
    return {"exact_match": float(out["exact_match"]), "f1": float(out["f1"])}


def torchmetrics_format(examples, preds: list[str]) -> tuple[list[dict], list[dict]]:
    tm_preds = [{"prediction_text": p, "id": ex.id} for ex, p in zip(examples, preds)]
    tm_targets = [{"answers": {"answer_start": [a.answer_start for a in ex.answers], "text": [a.text for a in ex.answers]},
                   "id": ex.id} for ex in examples]
    return tm_preds, tm_targets


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="3 timed A B rounds")
    size.add_argument("--full", action="store_true", help="7 timed A B rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed A B rounds after the warm-up")
    parser.add_argument("--questions", type=int, default=None, help="only the first N dev questions (default: all)")
    parser.add_argument("--data", default=str(SHARED_DATA / "dev-v1.1.json.gz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7 if args.full else 5)

    # Step 3: data (skip, not fail, where the shared data is absent).
    from pathlib import Path

    if not Path(args.data).is_file():
        return skipped("metrics", TITLE, f"SQuAD dev file not found: {args.data} (set LIT_RCQA_DATA)")
    from lit_rcqa.data.squad import load_squad

    examples = load_squad(args.data).examples[: args.questions]
    preds, golds = make_inputs(examples, args.seed)
    tm_preds, tm_targets = torchmetrics_format(examples, preds)

    # Step 4: warm-up both, then A B A B ...
    ours_values = run_ours(preds, golds)
    tm_values = run_torchmetrics(tm_preds, tm_targets)
    ours_s, tm_s = [], []
    for _ in range(rounds):
        ours_s.append(timed(run_ours, preds, golds)[0])
        tm_s.append(timed(run_torchmetrics, tm_preds, tm_targets)[0])

    # Step 5: equal values (to 1e-9 against float64 torchmetrics; the float32 default is reported).
    tm64 = run_torchmetrics(tm_preds, tm_targets, torch.float64)
    diff64 = max(abs(ours_values[k] - tm64[k]) for k in ("exact_match", "f1"))
    diff32 = max(abs(ours_values[k] - tm_values[k]) for k in ("exact_match", "f1"))
    if diff64 > 1e-9:
        raise AssertionError(f"ours {ours_values} != torchmetrics (float64) {tm64}: max difference {diff64:.3g}")

    n = len(examples)
    ours_rate, tm_rate = n / median(ours_s), n / median(tm_s)
    rows = [row("EM/F1 metric (questions/s)", "questions/s", ours_rate, tm_rate, target=1.0)]
    details = {"questions": n, "rounds": rounds, "ours_s": ours_s, "torchmetrics_s": tm_s, "ours": ours_values,
               "torchmetrics_float32": tm_values, "torchmetrics_float64": tm64, "max_abs_diff_float64": diff64,
               "max_abs_diff_float32_default": diff32}
    print(f"{TITLE}: {n} questions, gold-perturbed predictions, medians of {rounds} A B rounds")
    print(f"  ours        {median(ours_s):8.3f} s  ({ours_rate:,.0f} questions/s)  EM {ours_values['exact_match']:.4f}"
          f"  F1 {ours_values['f1']:.4f}")
    print(f"  torchmetrics{median(tm_s):8.3f} s  ({tm_rate:,.0f} questions/s)  ratio {ours_rate / tm_rate:.2f}x")
    print(f"  values equal: max |diff| {diff64:.1e} vs float64 torchmetrics; {diff32:.1e} vs its float32 default")
    return result("metrics", TITLE, rows, details)


if __name__ == "__main__":
    main()
