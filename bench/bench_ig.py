"""Layer-wise IG, ours (prefix-cached) vs Captum LayerIntegratedGradients looped over the layers.

Same model, same real SQuAD dev inputs, same device, threads and float32, one batch of m rows per layer on both
sides; after a warm-up the two sides alternate A B A B and medians of seconds per example (all layers) are
reported. Four comparisons (`--sections`):

  equal     same rule and m on both sides, unpadded inputs; also the agreement of the importances.
  bound     ours vs the prefix-cached compute bound: one forward of the whole model (the prefix cache) plus, for
            each layer ℓ, (L − ℓ)/L of the model's own measured forward+backward on m interpolated rows
            (`model(inputs_embeds=...)`, the HF model itself, not our adapter). Reported as bound / ours.
  accuracy  equal accuracy on `--accuracy-examples` questions: median completeness gap δ ≤ 1 % and 95th percentile
            ≤ 5 % in every layer. Ours: the adaptive accuracy target per example and layer (`--tolerance`, 0.01:
            every δ ≤ 1 %, stricter than the criterion; with a comma list, the largest whose results meet it).
            Captum: the smallest m on the grid of steps of 8 at which its uniform Gauss–Legendre rule meets it on
            these examples. Neither search is charged (Captum's runs with our equal-valued uniform IG and is
            confirmed with Captum's own convergence delta at the chosen m); the ratio at the previous grid
            point, a lower bound for a user who knew Captum's exact m, is reported too. Then the importance
            error: the relative L2 error of each layer's importance vector against Gauss–Legendre m = 1024
            (`--reference-m`), for ours and for Captum at its m — is δ an honest proxy?
  padded    as commonly run (the MLRC reproduction): Captum on inputs padded to 384 with an attention mask,
            same m and rule, vs ours (unpadded).

    python -m bench.bench_ig --quick                 # 2 CPU cores: 1 short example (accuracy: 8)
    python -m bench.bench_ig                         # 3 examples x 2 rounds
    python -m bench.bench_ig --full --device cuda    # a GPU: 16 examples x 3 rounds
    python -m bench.bench_ig --model runs/NAME/model # a fine-tuned model instead of the embedded MiniLM
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
from bench.result import result, row
from lit_rcqa.attribution.integrated_gradients import IGSettings, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter
from lit_rcqa.attribution.record import layer_name
from lit_rcqa.paths import SHARED_DATA, embedded_model_dir

TITLE = "Layer-wise Integrated Gradients, all layers"
SECTIONS = ("equal", "bound", "accuracy", "padded")
GRID = tuple(range(8, 1025, 8))  # Captum's m at equal accuracy: steps of 8


def load_model(path: str | None, device: str, seed: int = 0):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    torch.manual_seed(seed)  # the embedded encoder's QA head is freshly initialised: seed it
    path = path or str(embedded_model_dir())
    model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32).eval().to(device)
    return model, AutoTokenizer.from_pretrained(path)


def squad_inputs(tokenizer, n: int, length: tuple[int, int], device: str) -> list[dict]:
    """The first n dev questions whose "[CLS] q [SEP] passage [SEP]" has a length in `length` (no truncation)."""
    with gzip.open(SHARED_DATA / "dev-v1.1.json.gz", "rt", encoding="utf-8") as f:
        articles = json.load(f)["data"]
    found = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                enc = tokenizer(qa["question"], paragraph["context"], return_tensors="pt")
                if length[0] <= enc["input_ids"].shape[1] <= length[1]:
                    found.append({"id": qa["id"], "input_ids": enc["input_ids"][0].to(device),
                                  "token_type_ids": enc["token_type_ids"][0].to(device)})
                    if len(found) == n:
                        return found
    return found


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn, *args, **kwargs):
    _sync(device)
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync(device)
    return time.perf_counter() - t0, out


def ours(model, example, settings, layers="all"):
    return integrated_gradients(model, example["input_ids"], token_type_ids=example["token_type_ids"],
                                layers=layers, settings=settings)


def captum_all_layers(model, adapter, example, span, steps, method, *, pad_to=None, deltas=False):
    """Captum LIG for every layer: importances [n_layers, T] (and relative gaps [n_layers] with `deltas`)."""
    ids, types, mask = example["input_ids"], example["token_type_ids"], None
    T = int(ids.shape[0])
    if pad_to is not None and pad_to > T:
        ids = torch.cat([ids, ids.new_zeros(pad_to - T)])
        types = torch.cat([types, types.new_zeros(pad_to - T)])
        mask = torch.cat([torch.ones_like(example["input_ids"]), ids.new_zeros(pad_to - T)])
    importance, gaps = [], []
    for i in range(adapter.num_layers + 1):
        out = captum_layer_ig(model, adapter.layer_module(i), ids, types, span, steps=steps, method=method,
                              attention_mask=mask, return_delta=deltas)
        attr, gap = out if deltas else (out, None)
        importance.append(attr[:T].norm(dim=-1).cpu().numpy())
        gaps.append(gap)
    return np.stack(importance), (np.array(gaps) if deltas else None)


def meets(deltas: np.ndarray, median: float = 0.01, p95: float = 0.05) -> np.ndarray:
    """Per layer: median δ ≤ 1 % and 95th percentile ≤ 5 % over the examples. deltas [n_examples, n_layers]."""
    return (np.median(deltas, axis=0) <= median) & (np.percentile(deltas, 95, axis=0) <= p95)


# --- sections -----------------------------------------------------------------------------------------------
def equal_settings(model, adapter, examples, spans, args) -> dict:
    settings = IGSettings(steps=args.steps, method=args.method)
    ours_s, captum_s, agreement, deltas = [], [], [], []
    for example, span in zip(examples, spans):
        ours(model, example, settings)  # warm-up at the timed shapes: the first pass of a shape costs more
        captum_all_layers(model, adapter, example, span, args.steps, args.method)
        for _ in range(args.rounds):  # alternate A B
            seconds, res = timed(args.device, ours, model, example, settings)
            ours_s.append(seconds)
            seconds, (reference, _) = timed(args.device, captum_all_layers, model, adapter, example, span,
                                            args.steps, args.method)
            captum_s.append(seconds)
        agreement.append(np.abs(res.importance - reference).max(axis=1) / np.abs(reference).max(axis=1))
        deltas.append(res.delta)
    agreement, deltas = np.stack(agreement), np.stack(deltas)
    return {"ours_s_per_example": statistics.median(ours_s), "captum_s_per_example": statistics.median(captum_s),
            "ours_runs_s": ours_s, "captum_runs_s": captum_s,
            "max_rel_diff_per_layer": agreement.max(axis=0).tolist(),
            "median_delta_per_layer": np.median(deltas, axis=0).tolist()}


def compute_bound(model, adapter, examples, args, ours_s_per_example: float) -> dict:
    """Seconds per example the prefix-cached method cannot beat, from the model's own forward and backward."""
    L = adapter.num_layers
    per_example = []
    for example in examples:
        ids, types = example["input_ids"][None], example["token_type_ids"][None]
        T = int(ids.shape[1])
        embeds = model.get_input_embeddings()(ids).detach().expand(args.steps, T, -1).contiguous()
        types_m = types.expand(args.steps, T)

        def forward_backward():
            x = embeds.clone().requires_grad_(True)
            out = model(inputs_embeds=x, token_type_ids=types_m)
            torch.autograd.grad(out.start_logits[:, 0].sum() + out.end_logits[:, 0].sum(), x)

        def forward_once():
            with torch.no_grad():
                model(input_ids=ids, token_type_ids=types)

        forward_backward(), forward_once()  # warm-up
        fb = statistics.median(timed(args.device, forward_backward)[0] for _ in range(max(2, args.rounds)))
        fw = statistics.median(timed(args.device, forward_once)[0] for _ in range(3))
        per_example.append(fw + fb * sum((L - ell) / L for ell in range(L + 1)))
    bound = statistics.median(per_example)
    return {"bound_s_per_example": bound, "fraction_of_bound": bound / ours_s_per_example,
            "model_layers": L, "note": "bound = forward + Σ_ℓ (L−ℓ)/L · forward+backward on m rows"}


def smallest_grid_m(model, examples, layers: list[int], grid: list[int]) -> tuple[dict[int, int], list[int]]:
    """Per layer, the smallest grid m whose uniform Gauss–Legendre IG meets the criterion on `examples`.

    Searched with our IG (equal to Captum's to ~1e-7): first on the doublings of the grid's first step, then by
    bisection on the grid inside the bracket that met it (meeting the criterion is taken to be monotone in m).
    Returns ({layer: m}, layers no grid m met).
    """
    def ok_layers(m, layers):
        settings = IGSettings(steps=m, method="gausslegendre")
        d = np.stack([ours(model, ex, settings, layers=layers).delta for ex in examples])
        return [layer for layer, good in zip(layers, meets(d)) if good]

    coarse = [m for m in grid if m == grid[0] or (m // grid[0]) & (m // grid[0] - 1) == 0]  # grid[0] · 2^k
    pending, need, lower = list(layers), {}, grid[0] - 1
    for m in coarse:
        if not pending:
            break
        met = ok_layers(m, pending)
        inside = [f for f in grid if lower < f <= m]  # the smallest m in (previous doubling, m], by bisection
        for layer in met:
            lo, hi = 0, len(inside) - 1  # inside[hi] meets it
            while lo < hi:
                mid = (lo + hi) // 2
                if ok_layers(inside[mid], [layer]):
                    hi = mid
                else:
                    lo = mid + 1
            need[layer] = inside[hi]
        pending = [layer for layer in pending if layer not in need]
        lower = m
    return need, pending


def relative_l2(importance: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """‖imp − ref‖₂ / ‖ref‖₂ per layer: [n_layers, T] each -> [n_layers]."""
    return np.linalg.norm(importance - reference, axis=1) / np.linalg.norm(reference, axis=1)


def equal_accuracy(model, adapter, examples, spans, args) -> dict:
    n_layers = adapter.num_layers + 1
    # ours: the largest accuracy target (from --tolerance, largest first) whose results meet the criterion, found
    # untimed as Captum's m is (its runs are also the warm-up at the timed shapes)
    for tolerance in sorted(args.tolerance, reverse=True):
        tol = IGSettings(tolerance=tolerance, max_steps=args.max_steps)
        if meets(np.stack([ours(model, ex, tol).delta for ex in examples])).all():
            break
    chosen = tol.tolerance  # the smallest one tried when none meets it
    # Captum: the smallest grid m meeting the criterion in every layer (searched untimed), confirmed by Captum's
    # own convergence delta at that m (the next grid points if it differs)
    grid = [m for m in GRID if m <= args.max_grid]
    need, pending = smallest_grid_m(model, examples, list(range(n_layers)), grid)
    if pending:
        return {"ours_meets": None, "tolerance": chosen, "captum_m": None,
                "note": f"no grid m up to {args.max_grid} meets the criterion in layers "
                        f"{[layer_name(i) for i in pending]}"}
    # timed, alternating ours and Captum per example (drifts of a shared machine hit both sides alike); Captum's
    # own convergence deltas confirm its m (else the next grid point, timed again); they cost Captum two forward
    # passes per layer (ours computes δ too: F(b) rides along in its first chunk)
    for m in grid[grid.index(max(need.values())):]:
        ours_s, captum_s, ours_res, captum_imp, captum_deltas = [], [], [], [], []
        for example, span in zip(examples, spans):
            seconds, res = timed(args.device, ours, model, example, tol)
            ours_s.append(seconds)
            ours_res.append(res)
            seconds, (importance, gaps) = timed(args.device, captum_all_layers, model, adapter, example, span, m,
                                                "gausslegendre", deltas=True)
            captum_s.append(seconds)
            captum_imp.append(importance)
            captum_deltas.append(gaps)
        captum_deltas = np.stack(captum_deltas)
        if meets(captum_deltas).all():
            break
    ours_deltas, ours_steps = np.stack([r.delta for r in ours_res]), np.stack([r.steps for r in ours_res])
    previous = grid[grid.index(m) - 1] if grid.index(m) > 0 else m
    o, c = statistics.median(ours_s), statistics.median(captum_s)
    out = {"ours_s_per_example": o, "captum_s_per_example": c, "speedup": c / o,
           "speedup_if_captum_knew_exact_m_lower_bound": c * previous / m / o,
           "ours_total_s": sum(ours_s), "captum_total_s": sum(captum_s), "speedup_total": sum(captum_s) / sum(ours_s),
           "ours_meets": bool(meets(ours_deltas).all()), "tolerance": chosen,
           "tolerances_tried": sorted(args.tolerance, reverse=True), "max_steps": args.max_steps,
           "ours_all_within_tolerance": bool((ours_deltas <= chosen).all()),
           "ours_steps_per_layer_median": np.median(ours_steps, axis=0).tolist(),
           "ours_steps_per_layer_max": ours_steps.max(axis=0).tolist(),
           "ours_median_delta_per_layer": np.median(ours_deltas, axis=0).tolist(),
           "ours_p95_delta_per_layer": np.percentile(ours_deltas, 95, axis=0).tolist(),
           "ours_max_delta_per_layer": ours_deltas.max(axis=0).tolist(),
           "captum_m": m, "captum_m_previous_grid_point": previous,
           "smallest_grid_m_per_layer": [need[i] for i in range(n_layers)],
           "captum_median_delta_per_layer": np.median(captum_deltas, axis=0).tolist(),
           "captum_p95_delta_per_layer": np.percentile(captum_deltas, 95, axis=0).tolist(),
           "captum_max_delta_per_layer": captum_deltas.max(axis=0).tolist()}
    if args.reference_m:  # is δ an honest proxy? importance error against a converged reference
        reference = [ours(model, ex, IGSettings(steps=args.reference_m, method="gausslegendre")) for ex in examples]
        ours_err = np.stack([relative_l2(r.importance, ref.importance) for r, ref in zip(ours_res, reference)])
        captum_err = np.stack([relative_l2(imp, ref.importance) for imp, ref in zip(captum_imp, reference)])
        out["importance_error"] = {
            "reference": f"gausslegendre m={args.reference_m}",
            "reference_max_delta_per_layer": np.stack([r.delta for r in reference]).max(axis=0).tolist(),
            "ours_median_per_layer": np.median(ours_err, axis=0).tolist(),
            "ours_max_per_layer": ours_err.max(axis=0).tolist(),
            "captum_median_per_layer": np.median(captum_err, axis=0).tolist(),
            "captum_max_per_layer": captum_err.max(axis=0).tolist()}
    return out


def padded(model, adapter, examples, spans, args) -> dict:
    settings = IGSettings(steps=args.steps, method=args.method)
    ours_s, captum_s = [], []
    for example, span in zip(examples, spans):
        captum_all_layers(model, adapter, example, span, args.steps, args.method, pad_to=args.pad_to)  # warm-up
        for _ in range(args.rounds):
            ours_s.append(timed(args.device, ours, model, example, settings)[0])
            captum_s.append(timed(args.device, captum_all_layers, model, adapter, example, span, args.steps,
                                  args.method, pad_to=args.pad_to)[0])
    o, c = statistics.median(ours_s), statistics.median(captum_s)
    return {"ours_s_per_example": o, "captum_padded_s_per_example": c, "speedup": c / o, "pad_to": args.pad_to}


# --- driver ---------------------------------------------------------------------------------------------------
def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2 CPU cores: 1 example of 100-130 tokens, 3 rounds")
    size.add_argument("--full", action="store_true", help="a GPU: 16 examples, 3 rounds")
    parser.add_argument("--examples", type=int, default=None, help="default 3 (quick 1, full 16)")
    parser.add_argument("--accuracy-examples", type=int, default=None,
                        help="questions of section accuracy (default 8, full 16)")
    parser.add_argument("--reference-m", type=int, default=1024,
                        help="Gauss-Legendre m of the converged reference for the importance error (0: skip it)")
    parser.add_argument("--rounds", type=int, default=None, help="timed A B rounds per example (default 2)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--method", default="gausslegendre")
    parser.add_argument("--tokens", default=None, help="input length range (default 170,190; quick 100,130)")
    parser.add_argument("--model", default=None, help="a saved QA model folder (default: the embedded MiniLM)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    parser.add_argument("--tolerance", default="0.01",
                        help="ours' accuracy target per example and layer (section accuracy); a comma list: the "
                             "largest whose results meet the criterion is timed")
    parser.add_argument("--max-steps", type=int, default=257, help="cap on ours' evaluations per layer")
    parser.add_argument("--max-grid", type=int, default=1024, help="largest Captum m tried (section accuracy)")
    parser.add_argument("--pad-to", type=int, default=384)
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    size = {"examples": 1, "accuracy_examples": 8, "rounds": 3, "tokens": "100,130"} if args.quick else \
        {"examples": 16, "accuracy_examples": 16, "rounds": 3, "tokens": "170,190"} if args.full else \
        {"examples": 3, "accuracy_examples": 8, "rounds": 2, "tokens": "170,190"}
    for name, value in size.items():  # flags given explicitly win over the size's defaults
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    try:
        args.tolerance = [float(t) for t in str(args.tolerance).split(",") if t.strip()]
    except ValueError:
        parser.error(f"--tolerance takes numbers separated by commas, got {args.tolerance!r}")
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the embedded encoder's new QA head is expected, not news
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):  # exact float32 on both sides (TF32 would differ by ~1e-3)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model, tokenizer = load_model(args.model, args.device)
    adapter = EncoderAdapter(model)
    lo, hi = (int(x) for x in args.tokens.split(","))
    n_accuracy = args.accuracy_examples if "accuracy" in args.sections else 0
    all_examples = squad_inputs(tokenizer, max(args.examples, n_accuracy), (lo, hi), args.device)
    examples = all_examples[:args.examples]
    spans = []
    for example in all_examples:  # warm-up both sides, and the span both explain
        res = ours(model, example, IGSettings(steps=4, method=args.method))
        spans.append((res.pred_start, res.pred_end))
        captum_all_layers(model, adapter, example, spans[-1], 4, args.method)
    n_layers = adapter.num_layers + 1
    details = {"model": args.model or "embedded MiniLM-L6-H384 (seeded QA head)", "device": args.device,
               "examples": len(examples), "tokens": [int(e["input_ids"].shape[0]) for e in examples],
               "steps": args.steps, "method": args.method, "threads": args.threads, "rounds": args.rounds,
               "layers": [layer_name(i) for i in range(n_layers)]}
    if args.device.startswith("cuda"):
        details["gpu"] = torch.cuda.get_device_name(0)
    rows = []

    def save():  # after every section, so a run cut short keeps what it measured
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(result("ig", TITLE, rows, details), f, indent=1, default=float)

    print(f"IG, all {n_layers} layers, {len(examples)} example(s) of {details['tokens']} tokens on {args.device}, "
          f"{args.threads} threads", flush=True)
    if "equal" in args.sections or "bound" in args.sections:
        eq = details["equal"] = equal_settings(model, adapter, examples, spans, args)
        rows.append(row(f"IG all layers, m={args.steps} {args.method}, vs Captum LIG (s/example)", "s/example",
                        eq["ours_s_per_example"], eq["captum_s_per_example"], higher_is_better=False, target=1.4))
        print(f"equal settings: ours {eq['ours_s_per_example']:.3f} s, Captum {eq['captum_s_per_example']:.3f} s "
              f"({rows[-1]['ratio']:.2f}x); max rel diff per layer "
              f"{np.array2string(np.array(eq['max_rel_diff_per_layer']), precision=1)}", flush=True)
        save()
        if "bound" in args.sections:
            bd = details["bound"] = compute_bound(model, adapter, examples, args, eq["ours_s_per_example"])
            rows.append(row("IG vs the prefix-cached compute bound (s/example)", "s/example",
                            eq["ours_s_per_example"], bd["bound_s_per_example"], higher_is_better=False,
                            target=0.9))
            print(f"compute bound {bd['bound_s_per_example']:.3f} s: ours at {bd['fraction_of_bound']:.0%} of it",
                  flush=True)
            save()
    if "accuracy" in args.sections:
        acc = details["accuracy"] = equal_accuracy(model, adapter, all_examples[:n_accuracy], spans[:n_accuracy],
                                                   args)
        details["accuracy"]["tokens"] = [int(e["input_ids"].shape[0]) for e in all_examples[:n_accuracy]]
        if acc.get("captum_m"):
            rows.append(row(f"IG equal accuracy (median δ≤1 %, p95≤5 %, {n_accuracy} questions): ours tol "
                            f"{acc['tolerance']} vs Captum m={acc['captum_m']} (s/example)", "s/example",
                            acc["ours_s_per_example"], acc["captum_s_per_example"], higher_is_better=False,
                            target=4.0))
            print(f"equal accuracy on {n_accuracy} questions: ours {acc['ours_s_per_example']:.3f} s (evaluations per "
                  f"layer, median {acc['ours_steps_per_layer_median']}, max {acc['ours_steps_per_layer_max']}), "
                  f"Captum m={acc['captum_m']} {acc['captum_s_per_example']:.3f} s ({acc['speedup']:.2f}x; totals "
                  f"{acc['speedup_total']:.2f}x; {acc['speedup_if_captum_knew_exact_m_lower_bound']:.2f}x at "
                  f"m={acc['captum_m_previous_grid_point']})", flush=True)
            err = acc.get("importance_error")
            if err:
                fmt = lambda v: " ".join(f"{x:8.2e}" for x in v)
                print(f"importance error vs {err['reference']} (relative L2 per layer: {', '.join(details['layers'])})"
                      f"\n  ours   median {fmt(err['ours_median_per_layer'])}\n  ours   max    "
                      f"{fmt(err['ours_max_per_layer'])}\n  Captum median {fmt(err['captum_median_per_layer'])}"
                      f"\n  Captum max    {fmt(err['captum_max_per_layer'])}", flush=True)
        else:
            print(f"equal accuracy: {acc['note']}", flush=True)
        save()
    if "padded" in args.sections:
        pd = details["padded"] = padded(model, adapter, examples, spans, args)
        rows.append(row(f"IG as commonly run: Captum on inputs padded to {args.pad_to} (s/example)", "s/example",
                        pd["ours_s_per_example"], pd["captum_padded_s_per_example"], higher_is_better=False))
        print(f"padded to {args.pad_to}: ours {pd['ours_s_per_example']:.3f} s, Captum "
              f"{pd['captum_padded_s_per_example']:.3f} s ({pd['speedup']:.2f}x)", flush=True)
    save()
    return result("ig", TITLE, rows, details)


if __name__ == "__main__":
    main()
