"""Feature building (and post-processing) on the full SQuAD v1.1 dev set: ours vs a run_qa.py-style reference.

    python -m bench.bench_features            # 5 timed A B rounds after a warm-up
    python -m bench.bench_features --quick    # 1 timed round

Both sides use the embedded MiniLM tokenizer, 384/128 windows. The reference is written here from
the documented behaviour of transformers' examples/pytorch/question-answering `run_qa.py`
(`prepare_validation_features`) and `utils_qa.py` (`postprocess_qa_predictions`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from lit_rcqa.data.features import FeatureConfig, build_features
from lit_rcqa.data.squad import load_squad
from lit_rcqa.evaluation.postprocess import postprocess_predictions
from lit_rcqa.paths import SHARED_DATA, embedded_model_dir


def prepare_validation_features(examples, tokenizer, max_length=384, stride=128):
    """run_qa.py-style: one padded, windowed tokenizer call; feature -> example id; non-context offsets None."""
    pad_on_right = tokenizer.padding_side == "right"
    questions = [ex.question.lstrip() for ex in examples]
    contexts = [ex.context for ex in examples]
    tokenized = tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    tokenized["example_id"] = []
    context_index = 1 if pad_on_right else 0
    for i in range(len(tokenized["input_ids"])):
        sequence_ids = tokenized.sequence_ids(i)
        tokenized["example_id"].append(examples[sample_mapping[i]].id)
        tokenized["offset_mapping"][i] = [
            (o if sequence_ids[k] == context_index else None) for k, o in enumerate(tokenized["offset_mapping"][i])
        ]
    return tokenized


def postprocess_reference(examples, tokenized, start_logits, end_logits, n_best=20, max_answer_length=30):
    """utils_qa.py-style v1 post-processing: best text per example id (with n-best probabilities)."""
    features_per_example: dict[str, list[int]] = {}
    for i, example_id in enumerate(tokenized["example_id"]):
        features_per_example.setdefault(example_id, []).append(i)
    answers = {}
    for example in examples:
        predictions = []
        for i in features_per_example[example.id]:
            s_logits, e_logits = start_logits[i], end_logits[i]
            offsets = tokenized["offset_mapping"][i]
            start_indexes = np.argsort(s_logits)[-1: -n_best - 1: -1].tolist()
            end_indexes = np.argsort(e_logits)[-1: -n_best - 1: -1].tolist()
            for s in start_indexes:
                for e in end_indexes:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    predictions.append({"score": s_logits[s] + e_logits[e],
                                        "text": example.context[offsets[s][0]:offsets[e][1]]})
        predictions = sorted(predictions, key=lambda p: p["score"], reverse=True)[:n_best]
        if predictions:  # probabilities, as utils_qa computes them for the n-best file
            scores = np.array([p["score"] for p in predictions])
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
        answers[example.id] = predictions[0]["text"] if predictions else ""
    return answers


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 timed A B round")
    parser.add_argument("--rounds", type=int, default=5, help="timed A B rounds after the warm-up")
    parser.add_argument("--data", default=str(SHARED_DATA / "dev-v1.1.json.gz"))
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    examples = load_squad(args.data).examples
    config = FeatureConfig()

    # Features: warm-up both, then A B A B ...
    ours_s, ref_s = [], []
    _, features = _timed(build_features, examples, tokenizer, config, training=False)
    _, reference = _timed(prepare_validation_features, examples, tokenizer)
    for _ in range(rounds):
        ours_s.append(_timed(build_features, examples, tokenizer, config, training=False)[0])
        ref_s.append(_timed(prepare_validation_features, examples, tokenizer)[0])
    n_ours, n_ref = len(features.input_ids), len(reference["input_ids"])

    # Post-processing on the same random logits (the reference's features are padded to 384).
    # Padding gets -1e4, as a model's masked logits would, so both sides rank the same real tokens.
    rng = np.random.default_rng(0)
    start, end = [], []
    for i, ids in enumerate(reference["input_ids"]):
        n = len(features.input_ids[i])
        for logits in (start, end):
            row = np.full(len(ids), -1e4, dtype=np.float32)
            row[:n] = rng.standard_normal(n)
            logits.append(row)
    pp_ours, pp_ref = [], []
    for _ in range(max(1, rounds // 2)):
        seconds, (ours_answers, _) = _timed(postprocess_predictions, examples, features, start, end)
        pp_ours.append(seconds)
        seconds, ref_answers = _timed(postprocess_reference, examples, reference, start, end)
        pp_ref.append(seconds)
    # Ours also applies the max-context rule, so answers may differ where windows overlap.
    agree = sum(ours_answers[ex.id] == ref_answers[ex.id] for ex in examples) / len(examples)

    result = {
        "examples": len(examples),
        "features": n_ours,
        "reference_features": n_ref,
        "rounds": rounds,
        "features_per_s": n_ours / statistics.median(ours_s),
        "reference_features_per_s": n_ref / statistics.median(ref_s),
        "postprocess_examples_per_s": len(examples) / statistics.median(pp_ours),
        "reference_postprocess_examples_per_s": len(examples) / statistics.median(pp_ref),
        "postprocess_answer_agreement": agree,
    }
    result["features_ratio"] = result["features_per_s"] / result["reference_features_per_s"]
    result["postprocess_ratio"] = result["postprocess_examples_per_s"] / result["reference_postprocess_examples_per_s"]

    print(f"SQuAD v1.1 dev: {len(examples)} examples, {n_ours} features (reference {n_ref}), {rounds} A B rounds")
    print(f"{'':24}{'ours':>12}{'reference':>12}{'ratio':>8}")
    print(f"{'features / s':24}{result['features_per_s']:12.0f}{result['reference_features_per_s']:12.0f}"
          f"{result['features_ratio']:8.2f}")
    print(f"{'postprocess examples / s':24}{result['postprocess_examples_per_s']:12.0f}"
          f"{result['reference_postprocess_examples_per_s']:12.0f}{result['postprocess_ratio']:8.2f}")
    print(f"same best answer on random logits: {100 * agree:.2f}% (ours adds the max-context rule)")
    return result


if __name__ == "__main__":
    main()
