"""Score predictions as the official SQuAD scripts do: a drop-in for evaluate-v1.1.py and evaluate-v2.0.py.

    python -m lit_rcqa.evaluate dev-v1.1.json.gz predictions.json
    python -m lit_rcqa.evaluate dev-v2.0.json predictions.json --na-prob-file na_prob.json [-t 1.0] [-o eval.json]

DATASET is SQuAD JSON (plain or .gz) or DuoRC JSON; PREDICTIONS is {"question id": "answer"} ("NA"
means no answer for DuoRC). A SQuAD 2.0 file (it declares "v2.0" or has is_impossible fields, even
with every question answerable), a dataset with an unanswerable question, and DuoRC are scored as
evaluate-v2.0.py does; any other as evaluate-v1.1.py. The output is that script's, key for key:
- v1.1: {"exact_match", "f1"} on one line; a question without a prediction scores 0 and stays in the
  total ("Unanswered question <id> will receive score 0." on stderr). No options.
- v2.0: exact, f1, total, HasAns_exact/f1/total, NoAns_exact/f1/total (the groups present), indented;
  golds that normalise to nothing (".") are dropped before scoring; a question without a prediction
  is left out of every total ("Missing prediction for <id>" on stderr: the official script prints it
  on stdout, then stops with a KeyError; what we print is its result on the predicted questions).
  --na-prob-file FILE ({id: probability of no answer}, as train.py writes na_prob.json) scores a
  question as the empty answer when its probability exceeds --na-prob-thresh (default 1.0) and adds
  best_exact, best_exact_thresh, best_f1, best_f1_thresh; --out-file writes the JSON to a file
  instead of stdout. --out-image-dir (the official precision-recall plots) is refused.
Mistakes in the inputs exit with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from lit_rcqa.errors import UserError

DUORC_NO_ANSWER = "NA"
V11, V20 = "1.1", "2.0"


def scoring_version(examples: Sequence[Any], *, data_version: str = "", duorc: bool = False) -> str:
    """Which official script scores this data: v2.0 for DuoRC, for a file the loader reads as SQuAD 2.0
    (`data_version` "2.0": it declares "v2.0" or has is_impossible fields, even if every question is
    answerable) and for data with an unanswerable question; v1.1 otherwise."""
    v2 = duorc or data_version == V20 or any(ex.is_impossible for ex in examples)
    return V20 if v2 else V11


def score(examples: Sequence[Any], predictions: Mapping[str, str], *, data_version: str = "", duorc: bool = False,
          na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0) -> tuple[dict[str, Any], list[str]]:
    """(the official script's output dict, ids of the questions without a prediction), for the script
    `scoring_version` picks. No-answer probabilities apply to v2.0 only."""
    if scoring_version(examples, data_version=data_version, duorc=duorc) == V11:
        if na_probs is not None:
            raise ValueError("no-answer probabilities are a SQuAD v2.0 option")
        return score_v11(examples, predictions)
    return score_v20(examples, predictions, duorc=duorc, na_probs=na_probs, na_prob_thresh=na_prob_thresh)


def score_v11(examples: Sequence[Any], predictions: Mapping[str, str]) -> tuple[dict[str, float], list[str]]:
    """evaluate-v1.1.py's evaluate(): every question counts; a missing prediction scores 0."""
    from lit_rcqa.evaluation.metrics import question_scores

    if not examples:
        raise ValueError("no questions to score")
    exact = f1 = 0.0
    missing = []
    for ex in examples:  # summed in file order, as the script does, so the floats are the same
        if ex.id not in predictions:
            missing.append(ex.id)
            continue
        e, f = question_scores(predictions[ex.id], [a.text for a in ex.answers], version_2=False)
        exact += e
        f1 += f
    return {"exact_match": 100.0 * exact / len(examples), "f1": 100.0 * f1 / len(examples)}, missing


def score_v20(examples: Sequence[Any], predictions: Mapping[str, str], *, duorc: bool = False,
              na_probs: Mapping[str, float] | None = None,
              na_prob_thresh: float = 1.0) -> tuple[dict[str, Any], list[str]]:
    """evaluate-v2.0.py's main() on the questions that have a prediction. `na_probs`, when given, must
    hold every such question (the script's own file-less default is 0.0 for each)."""
    from lit_rcqa.evaluation.metrics import question_scores, v2_eval_dict

    # 1. Raw scores of the predicted questions, in file order (get_raw_scores).
    has_ans: dict[str, bool] = {}
    answers: dict[str, str] = {}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    missing = []
    for ex in examples:
        if ex.id not in predictions:
            missing.append(ex.id)
            continue
        golds = [] if ex.is_impossible else [a.text for a in ex.answers]
        answer = predictions[ex.id]
        if duorc and answer.strip() == DUORC_NO_ANSWER:
            answer = ""
        has_ans[ex.id], answers[ex.id] = bool(golds), answer
        exact_raw[ex.id], f1_raw[ex.id] = question_scores(answer, golds, version_2=True)
    if not exact_raw:
        raise ValueError("no question has a prediction")

    # 2. A probability above the threshold means "no answer" (apply_no_ans_threshold).
    probs = na_probs if na_probs is not None else dict.fromkeys(predictions, 0.0)
    lacking = [qid for qid in exact_raw if qid not in probs]
    if lacking:
        raise ValueError(f"no no-answer probability for question {lacking[0]!r} "
                         f"({len(lacking)} of {len(exact_raw)} predicted questions have none)")
    exact = {q: float(not has_ans[q]) if probs[q] > na_prob_thresh else s for q, s in exact_raw.items()}
    f1 = {q: float(not has_ans[q]) if probs[q] > na_prob_thresh else s for q, s in f1_raw.items()}

    # 3. Totals, then the answerable and unanswerable groups (make_eval_dict, merge_eval).
    result = v2_eval_dict(list(exact.values()), list(f1.values()), [has_ans[q] for q in exact])

    # 4. With a probability file: the best threshold for each score (find_all_best_thresh).
    if na_probs is not None:
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, thresh = best_threshold(raw, answers, has_ans, na_probs)
            result[f"best_{name}"], result[f"best_{name}_thresh"] = best, thresh
    return result, missing


def best_threshold(scores: Mapping[str, float], answers: Mapping[str, str], has_ans: Mapping[str, bool],
                   na_probs: Mapping[str, float]) -> tuple[float, float]:
    """(best score in percent, the probability threshold reaching it), as find_best_thresh: start from
    "no answer" everywhere, then answer the questions one by one in increasing probability (ties in
    the file's order, Python's sort being stable), keeping the first best running score."""
    current = best = sum(1 for q in scores if not has_ans[q])  # every unanswerable question right
    best_thresh: float = 0.0
    for qid in sorted(na_probs, key=lambda q: na_probs[q]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            current += scores[qid]
        elif answers[qid]:  # an answer to an unanswerable question (the raw string, even " ")
            current -= 1
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


# ---- files -------------------------------------------------------------------------------------
def _read_json_object(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} file not found") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read {what} ({err})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: {what} must be a JSON object {{\"question id\": ...}}, got {type(value).__name__}")
    return value


def read_predictions(path: str) -> dict[str, str]:
    predictions = _read_json_object(path, "predictions")
    for qid, answer in predictions.items():
        if not isinstance(answer, str):
            raise UserError(f"{path}: prediction for {qid!r} must be a string, got {type(answer).__name__}")
    return predictions


def read_na_probs(path: str) -> dict[str, float]:
    """{question id: probability of no answer}; numbers as written (an int stays an int, as the script keeps it)."""
    na_probs = _read_json_object(path, "no-answer probability")
    for qid, p in na_probs.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise UserError(f"{path}: no-answer probability for {qid!r} must be a finite number, got {p!r}")
    return na_probs


def write_json_file(path: str, value: Any) -> None:
    """As the script writes --out-file (compact JSON), atomically (`process.write_text_atomic`): a failure never
    leaves half a file."""
    from lit_rcqa.process import write_text_atomic

    try:
        write_text_atomic(Path(path), json.dumps(value))
    except OSError as err:
        raise UserError(f"{path}: cannot write the scores ({err.strerror or err})") from None


# ---- command line --------------------------------------------------------------------------------
class _OneLineParser(argparse.ArgumentParser):
    """A bad flag ends in one line on stderr and exit code 2, not a usage screen."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m lit_rcqa.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", metavar="data.json", help="SQuAD v1.1/v2.0 JSON (or .json.gz) or DuoRC JSON")
    parser.add_argument("predictions", metavar="pred.json", help='JSON object {"question id": "answer"}')
    v2 = parser.add_argument_group("SQuAD v2.0 only (the options of evaluate-v2.0.py)")
    v2.add_argument("--out-file", "-o", metavar="eval.json", help="write the scores to this file instead of stdout")
    v2.add_argument("--na-prob-file", "-n", metavar="na_prob.json",
                    help="JSON {question id: probability of no answer}; adds the best thresholds")
    v2.add_argument("--na-prob-thresh", "-t", type=float, default=None, metavar="P",
                    help='predict "" where the no-answer probability exceeds this (default 1.0)')
    v2.add_argument("--out-image-dir", "-p", metavar="out_images",
                    help="not supported (the official precision-recall plots): refused")
    v2.add_argument("--verbose", "-v", action="store_true", help="accepted; no effect (as in evaluate-v2.0.py)")
    return parser


def _check_options(args: argparse.Namespace, version: str) -> None:
    if args.out_image_dir is not None:
        raise UserError("--out-image-dir: the precision-recall plots of evaluate-v2.0.py are not supported; "
                        "run the official script for them")
    if args.na_prob_thresh is not None and not math.isfinite(args.na_prob_thresh):
        raise UserError(f"--na-prob-thresh must be a finite number, got {args.na_prob_thresh}")
    if version == V11:
        options = {"--out-file": args.out_file, "--na-prob-file": args.na_prob_file,
                   "--na-prob-thresh": args.na_prob_thresh, "--verbose": args.verbose or None}
        given = [flag for flag, value in options.items() if value is not None]
        if given:
            raise UserError(f"{given[0]} is an option of evaluate-v2.0.py, but {args.dataset} is SQuAD v1.1 (no "
                            "v2.0 version or is_impossible field, no unanswerable question): evaluate-v1.1.py "
                            "takes no options")
    if args.out_file is not None and os.path.exists(args.out_file):  # never overwrite an input
        inputs = [p for p in (args.dataset, args.predictions, args.na_prob_file) if p and os.path.exists(p)]
        if any(os.path.samefile(args.out_file, p) for p in inputs):
            raise UserError(f"--out-file {args.out_file} is one of the input files; choose another file")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0), or a bad flag already reported in one line (2)
        return int(done.code or 0)
    try:
        from lit_rcqa.data.load import load_examples

        loaded = load_examples(args.dataset, mode="eval")
        examples, duorc = loaded.examples, loaded.version == "duorc"
        if not examples:
            raise UserError(f"{args.dataset}: no questions to score")
        version = scoring_version(examples, data_version=loaded.version, duorc=duorc)
        _check_options(args, version)
        predictions = read_predictions(args.predictions)
        na_probs = read_na_probs(args.na_prob_file) if args.na_prob_file else None
        if version == V20:
            answered = sum(1 for ex in examples if ex.id in predictions)
            if not answered:
                raise UserError(f"{args.predictions}: no prediction is for a question of {args.dataset}")
            lacking = [ex.id for ex in examples if ex.id in predictions and na_probs is not None
                       and ex.id not in na_probs]
            if lacking:
                raise UserError(f"{args.na_prob_file}: no probability for question {lacking[0]!r} "
                                f"({len(lacking)} of the {answered} predicted questions have none)")
        thresh = 1.0 if args.na_prob_thresh is None else args.na_prob_thresh
        result, missing = score(examples, predictions, data_version=loaded.version, duorc=duorc,
                                na_probs=na_probs, na_prob_thresh=thresh)
        if args.out_file is not None:
            write_json_file(args.out_file, result)
        else:
            print(json.dumps(result) if version == V11 else json.dumps(result, indent=2))
        for qid in missing:  # each script's own message (evaluate-v2.0.py prints it on stdout)
            print(f"Unanswered question {qid} will receive score 0." if version == V11
                  else f"Missing prediction for {qid}", file=sys.stderr)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
