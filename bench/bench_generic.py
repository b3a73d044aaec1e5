"""Layer-wise IG through the generic path vs the family path, on the same BERT-family model (MiniLM).

The generic path (`lit_rcqa.attribution.generic`) runs the model's own forward for every chunk of
interpolation rows, with the layers below ℓ stood in for; the family path (`lit_rcqa.attribution.encoders`)
calls the layers directly. Same model, inputs (real SQuAD dev questions), device, threads, rule and m; after a
warm-up the two alternate A B and medians of seconds per example (all layers) are compared. The ratio is
family time / generic time, i.e. the generic path's speed relative to the family path's (target >= 0.95);
the agreement of the two paths' importances is reported too.

    python -m bench.bench_generic --quick             # 2 CPU cores: 2 short questions, m = 16
    python -m bench.bench_generic                     # 3 questions of 170-190 tokens, m = 50
    python -m bench.bench_generic --full --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

from bench.bench_ig import load_model, squad_inputs, timed
from bench.result import result, row
from lit_rcqa.attribution.integrated_gradients import IGSettings, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter

TITLE = "Layer-wise IG: generic path vs family path"


def ig(adapter: EncoderAdapter, example: dict, settings: IGSettings):
    return integrated_gradients(adapter, example["input_ids"], token_type_ids=example["token_type_ids"],
                                settings=settings)


def compare(family: EncoderAdapter, generic: EncoderAdapter, examples: list[dict], settings: IGSettings,
            rounds: int, device: str) -> dict:
    family_s, generic_s, agreement = [], [], []
    for example in examples:
        a, b = ig(family, example, settings), ig(generic, example, settings)  # warm-up at the timed shapes
        agreement.append(float(np.abs(a.importance - b.importance).max() / np.abs(a.importance).max()))
        for _ in range(rounds):  # alternate A B
            family_s.append(timed(device, ig, family, example, settings)[0])
            generic_s.append(timed(device, ig, generic, example, settings)[0])
    f, g = statistics.median(family_s), statistics.median(generic_s)
    return {"family_s_per_example": f, "generic_s_per_example": g, "speed_ratio": f / g,
            "family_runs_s": family_s, "generic_runs_s": generic_s, "max_rel_diff": max(agreement)}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2 CPU cores: 2 questions of 100-130 tokens, m = 16")
    size.add_argument("--full", action="store_true", help="a GPU: 16 questions, 3 rounds")
    parser.add_argument("--examples", type=int, default=None, help="default 3 (quick 2, full 16)")
    parser.add_argument("--rounds", type=int, default=None, help="timed A B rounds per example (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="m per layer (default 50, quick 16)")
    parser.add_argument("--method", default="gausslegendre")
    parser.add_argument("--tokens", default=None, help="input length range (default 170,190; quick 100,130)")
    parser.add_argument("--model", default=None, help="a saved QA model folder (default: the embedded MiniLM)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    size = {"examples": 2, "rounds": 3, "tokens": "100,130", "steps": 16} if args.quick else \
        {"examples": 16, "rounds": 3, "tokens": "170,190", "steps": 50} if args.full else \
        {"examples": 3, "rounds": 2, "tokens": "170,190", "steps": 50}
    for name, value in size.items():  # flags given explicitly win over the size's defaults
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the embedded encoder's new QA head is expected, not news
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model, tokenizer = load_model(args.model, args.device)
    family, generic = EncoderAdapter(model), EncoderAdapter(model, generic=True)
    if family.generic:
        raise SystemExit(f"model type {family.model_type!r} has no family path to compare with")
    lo, hi = (int(x) for x in args.tokens.split(","))
    examples = squad_inputs(tokenizer, args.examples, (lo, hi), args.device)
    settings = IGSettings(steps=args.steps, method=args.method)
    details = {"model": args.model or "embedded MiniLM-L6-H384 (seeded QA head)", "model_type": family.model_type,
               "device": args.device, "examples": len(examples),
               "tokens": [int(e["input_ids"].shape[0]) for e in examples], "steps": args.steps,
               "method": args.method, "threads": args.threads, "rounds": args.rounds}
    print(f"IG generic vs family path, {len(examples)} example(s) of {details['tokens']} tokens, m={args.steps} "
          f"{args.method}, on {args.device}, {args.threads} threads", flush=True)
    details |= compare(family, generic, examples, settings, args.rounds, args.device)
    rows = [row(f"IG all layers, generic path vs family path ({family.model_type}, m={args.steps}; s/example)",
                "s/example", details["generic_s_per_example"], details["family_s_per_example"],
                higher_is_better=False, target=0.95)]
    print(f"family {details['family_s_per_example']:.3f} s, generic {details['generic_s_per_example']:.3f} s per "
          f"example: generic speed {details['speed_ratio']:.3f}x the family path's; max rel diff of importances "
          f"{details['max_rel_diff']:.1e}", flush=True)
    return result("generic", TITLE, rows, details)


if __name__ == "__main__":
    main()
