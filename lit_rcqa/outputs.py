"""What a finished run leaves behind: the HF model, predictions, n-best lists, na-probs (v2), metrics, a summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lit_rcqa.runs import write_json_atomic


def gather_to_rank_zero(predictions: dict[str, str], nbest: dict[str, list]) -> tuple[dict[str, str], dict[str, list]]:
    """Each rank scored whole examples; merge their dicts (every rank gets the merged result)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return predictions, nbest
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (predictions, nbest))
    merged_preds, merged_nbest = {}, {}
    for preds, nb in parts:
        merged_preds.update(preds)
        merged_nbest.update(nb)
    return merged_preds, merged_nbest


def _entry(entry: Any) -> dict[str, Any]:
    return dataclasses.asdict(entry) if dataclasses.is_dataclass(entry) else dict(entry)


def null_probabilities(nbest: dict[str, list]) -> dict[str, float]:
    """{question id: probability of the null (no-answer) entry in its n-best list, 0.0 where it has none}:
    the `--na-prob-file` of the official SQuAD v2.0 script. The null entry is the empty text scored at a
    window's CLS token (feature_index >= 0); the empty fallback of an example without any span has
    feature_index -1 and is not a scored null answer."""
    probs = {}
    for qid, entries in nbest.items():
        nulls = [e for e in map(_entry, entries) if e["text"] == "" and e["feature_index"] >= 0]
        probs[qid] = float(nulls[0]["probability"]) if nulls else 0.0
    return probs


def write_run_outputs(run_dir: Path, model, tokenizer, predictions: dict[str, str], nbest: dict[str, list],
                      metrics: dict[str, Any], *, save_model: bool, version_2: bool = False) -> None:
    """model/ (save_pretrained + tokenizer), predictions.json, nbest_predictions.json, na_prob.json (v2),
    metrics.json (last: its presence means the others are written)."""
    run_dir = Path(run_dir)
    if save_model:
        model.save_pretrained(run_dir / "model")
        tokenizer.save_pretrained(run_dir / "model")
    write_json_atomic(run_dir / "predictions.json", predictions)
    write_json_atomic(run_dir / "nbest_predictions.json", {k: [_entry(e) for e in v] for k, v in nbest.items()})
    if version_2:
        write_json_atomic(run_dir / "na_prob.json", null_probabilities(nbest))
    write_json_atomic(run_dir / "metrics.json", metrics)


def print_summary(run_dir: Path, metrics: dict[str, Any], seconds: float, tracker: str = "") -> None:
    rows = [("exact match", f"{metrics.get('exact_match', float('nan')):.2f}"),
            ("F1", f"{metrics.get('f1', float('nan')):.2f}"),
            ("questions", str(metrics.get("total", ""))),
            ("data", str(metrics.get("data", ""))),
            ("model", str(metrics.get("model", ""))),
            ("wall time", f"{seconds / 60:.1f} min"),
            ("run directory", str(run_dir))]
    if tracker:  # the W&B run's URL, or the command that uploads an offline run
        rows.append(("tracker", tracker))
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows) + "\n", flush=True)
