"""Score predictions against a QA dataset, as the official SQuAD v1.1 / v2.0 and DuoRC scripts do.

    python -m lit_rcqa.evaluate dev-v1.1.json.gz predictions.json

DATASET is SQuAD JSON (plain or .gz) or DuoRC JSON; PREDICTIONS is {"question id": "answer"}
("NA" means no answer for DuoRC). Prints one JSON object: exact_match, f1, total, plus the
HasAns_/NoAns_ split when some question has no answer. A missing prediction counts as wrong (as
in evaluate-v1.1.py), with a warning on stderr. Mistakes in the inputs exit with code 2 and one
line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from lit_rcqa.errors import UserError

DUORC_NO_ANSWER = "NA"


def score(examples: Sequence[Any], predictions: dict[str, str], *, duorc: bool = False) -> tuple[dict[str, Any], int]:
    """({exact_match, f1, total, ...}, number of missing predictions). Sums per group as evaluate-v2.0.py:
    questions with gold answers (HasAns) and without (NoAns, scored against "")."""
    from lit_rcqa.evaluation.metrics import exact_match_score, f1_score, max_over_golds

    version_2 = duorc or any(ex.is_impossible for ex in examples)  # evaluate-v2.0.py's empty-answer F1 rule
    sums = {"HasAns_": [0.0, 0.0, 0], "NoAns_": [0.0, 0.0, 0]}  # exact, f1, total
    missing = 0
    for ex in examples:
        golds = [] if ex.is_impossible else [a.text for a in ex.answers]
        acc = sums["HasAns_" if golds else "NoAns_"]
        acc[2] += 1
        answer = predictions.get(ex.id)
        if answer is None:
            missing += 1  # scores 0, even where the gold is "no answer"
            continue
        if duorc and answer.strip() == DUORC_NO_ANSWER:
            answer = ""
        acc[0] += max_over_golds(exact_match_score, answer, golds)
        acc[1] += max_over_golds(lambda p, g: f1_score(p, g, version_2=version_2), answer, golds)

    def block(prefix: str, exact: float, f1: float, total: int) -> dict[str, Any]:
        exact_key = f"{prefix}exact" if prefix else "exact_match"
        return {exact_key: 100.0 * exact / max(total, 1), f"{prefix}f1": 100.0 * f1 / max(total, 1),
                f"{prefix}total": total}

    has, no = sums["HasAns_"], sums["NoAns_"]
    result = block("", has[0] + no[0], has[1] + no[1], has[2] + no[2])
    if no[2]:
        if has[2]:
            result.update(block("HasAns_", *has))
        result.update(block("NoAns_", *no))
    return result, missing


def read_predictions(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as fh:
            predictions = json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: predictions file not found") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read predictions ({err})") from None
    if not isinstance(predictions, dict):
        raise UserError(f"{path}: predictions must be a JSON object {{\"id\": \"answer\"}}, "
                        f"got {type(predictions).__name__}")
    for qid, answer in predictions.items():
        if not isinstance(answer, str):
            raise UserError(f"{path}: prediction for {qid!r} must be a string, got {type(answer).__name__}")
    return predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_rcqa.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="SQuAD v1.1/v2.0 JSON (or .json.gz) or DuoRC JSON")
    parser.add_argument("predictions", help='JSON object {"question id": "answer"}')
    args = parser.parse_args(argv)
    try:
        from lit_rcqa.data.load import load_examples

        loaded = load_examples(args.dataset, mode="eval")
        predictions = read_predictions(args.predictions)
        result, missing = score(loaded.examples, predictions, duorc=loaded.version == "duorc")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if missing:
        print(f"warning: {missing} of {len(loaded.examples)} questions have no prediction; "
              "they count as wrong", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
