"""Extractive QA inference with our own windows and post-processing (no transformers pipeline).

    from lit_rcqa.predict import answer
    result = answer("runs/NAME/model", "Who founded the guild?", long_context)
    result.text, result.start, result.end, result.score, result.probability

    python -m lit_rcqa.predict --model runs/NAME/model --data dev.json [--out predictions.json]

The same code path as validation in train.py: `build_features` cuts each context into overlapping
windows (so a context longer than one window is read whole), the model scores every window, and
`postprocess_predictions` picks the best span over all windows. The window and post-processing
settings are the run's own (`runs/NAME/config.yaml` beside `model/`), unless given explicitly; the
windows are scored in batches of the run's eval batch size, so a run's dev file gives back its
predictions.json exactly. The CLI writes predictions.json and nbest_predictions.json in the forms
train.py writes them (`python -m lit_rcqa.evaluate DATA predictions.json` scores them).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from lit_rcqa.data.example import QAExample
from lit_rcqa.data.windows import DEFAULT_WINDOWS
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.postprocess import DEFAULT_POSTPROCESS, PostprocessSettings

RUN_CONFIG = "config.yaml"  # train.py's resolved config, beside model/ in the run folder


@dataclass(frozen=True)
class PredictSettings:
    """Windowing and post-processing; the defaults are train.py's (and the paper's)."""

    max_seq_length: int = DEFAULT_WINDOWS.max_seq_length
    doc_stride: int = DEFAULT_WINDOWS.doc_stride
    max_query_length: int = DEFAULT_WINDOWS.max_query_length
    pad_to_max_length: bool = DEFAULT_WINDOWS.pad_to_max_length
    # Flat (answer() takes each as a keyword); the defaults are PostprocessSettings'.
    n_best: int = DEFAULT_POSTPROCESS.n_best
    max_answer_length: int = DEFAULT_POSTPROCESS.max_answer_length
    version_2: bool = DEFAULT_POSTPROCESS.version_2  # allow the empty (no-answer) prediction
    null_threshold: float = DEFAULT_POSTPROCESS.null_threshold
    batch_size: int = DEFAULT_WINDOWS.eval_batch_size  # windows per forward pass

    @property
    def postprocess(self) -> PostprocessSettings:
        return PostprocessSettings(n_best=self.n_best, max_answer_length=self.max_answer_length,
                                   version_2=self.version_2, null_threshold=self.null_threshold)


@dataclass(frozen=True)
class QAResult:
    """The best answer for one question: its text, [start, end) in the context, score and probability.

    start = end = -1 for the empty (no-answer) prediction. `score` is start_logit + end_logit;
    `probability` is its softmax share among the n-best candidates.
    """

    text: str
    start: int
    end: int
    score: float
    probability: float


def run_settings(model_dir: str | Path) -> tuple[PredictSettings, Optional[Path]]:
    """The settings the run used (its config.yaml beside `model_dir`), else the defaults; and that file."""
    import yaml

    path = Path(model_dir).parent / RUN_CONFIG
    if not path.is_file():
        return PredictSettings(), None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read the run's config ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a YAML mapping (train.py's config), got {type(config).__name__}")
    model, data = config.get("model") or {}, config.get("data") or {}
    found = {"max_seq_length": data.get("max_seq_length"), "doc_stride": data.get("doc_stride"),
             "max_query_length": data.get("max_query_length"), "pad_to_max_length": data.get("pad_to_max_length"),
             "batch_size": data.get("eval_batch_size"), "n_best": model.get("n_best"),
             "max_answer_length": model.get("max_answer_length"),
             "version_2": model.get("version_2_with_negative"), "null_threshold": model.get("null_threshold")}
    try:
        return _checked(PredictSettings(), {k: v for k, v in found.items() if v is not None}), path
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def _checked(base: PredictSettings, changes: dict[str, Any]) -> PredictSettings:
    """`base` with `changes`, each of the field's type and in range."""
    for key, value in changes.items():
        kind = type(getattr(base, key))
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or float(value).is_integer()))
        if not ok:
            expected = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
            raise UserError(f"{key} must be {expected}, got {value!r}")
        changes[key] = kind(value)
    settings = dataclasses.replace(base, **changes)
    for key in ("max_seq_length", "doc_stride", "max_query_length", "n_best", "max_answer_length", "batch_size"):
        if getattr(settings, key) < 1:
            raise UserError(f"{key} must be at least 1, got {getattr(settings, key)}")
    if settings.doc_stride >= settings.max_seq_length:
        raise UserError(f"doc_stride ({settings.doc_stride}) must be smaller than max_seq_length "
                        f"({settings.max_seq_length})")
    return settings


def load_model(model_dir: str | Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a saved HF folder; one clear error when it is not one."""
    from transformers import AutoTokenizer

    from lit_rcqa.model import load_qa_model

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise UserError(f"{model_dir}: not a saved model folder (no config.json); pass runs/NAME/model")
    model = load_qa_model(str(path)).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise UserError(f"{model_dir}: cannot load the tokenizer ({str(err).strip().splitlines()[0]})") from None
    return model, tokenizer


def score_windows(model: Any, features: Any, pad_token_id: int, settings: PredictSettings) -> tuple[list, list]:
    """Start and end logits of every window, [n_windows] lists of [window length] float32 arrays.

    Windows go through the model in order, `batch_size` at a time, padded to the batch's longest (or to
    max_seq_length), padding masked as in training: the same batches and numbers validation computes.
    """
    import torch

    from lit_rcqa.data.features import QAFeatureDataset, collate_features, window_lengths

    device = next(model.parameters()).device
    dataset = QAFeatureDataset(features)
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k != "token_type_ids"
             or features.token_type_ids is not None]
    pad_to = settings.max_seq_length if settings.pad_to_max_length else None
    starts, ends = [], []
    with torch.inference_mode():
        for first in range(0, len(dataset), settings.batch_size):
            batch = collate_features([dataset[i] for i in range(first, min(first + settings.batch_size, len(dataset)))],
                                     pad_token_id, pad_to=pad_to)
            out = model(**{k: batch[k].to(device) for k in names})
            pad = batch["attention_mask"].to(device) == 0  # [B, T]
            start = out.start_logits.masked_fill(pad, torch.finfo(out.start_logits.dtype).min)  # [B, T]
            end = out.end_logits.masked_fill(pad, torch.finfo(out.end_logits.dtype).min)  # [B, T]
            for i, n in enumerate(window_lengths(batch["attention_mask"])):
                starts.append(start[i, :n].float().cpu().numpy())
                ends.append(end[i, :n].float().cpu().numpy())
    return starts, ends


def predict_examples(model: Any, tokenizer: Any, examples: Sequence[QAExample],
                     settings: PredictSettings = PredictSettings()) -> tuple[dict[str, str], dict[str, list]]:
    """Best answer text and n-best list (`NBestEntry`) per example id, as validation computes them."""
    from lit_rcqa.data.features import FeatureConfig, build_features
    from lit_rcqa.evaluation.postprocess import postprocess_predictions

    config = FeatureConfig(max_seq_length=settings.max_seq_length, doc_stride=settings.doc_stride,
                           max_query_length=settings.max_query_length, pad_to_max_length=settings.pad_to_max_length)
    features = build_features(examples, tokenizer, config, training=False)
    starts, ends = score_windows(model, features, tokenizer.pad_token_id, settings)
    return postprocess_predictions(examples, features, starts, ends, **dataclasses.asdict(settings.postprocess))


def answer(model_dir_or_model: Any, question: str, context: str, n_best: Optional[int] = None, tokenizer: Any = None,
           **settings: Any) -> QAResult:
    """The best answer to `question` in `context`, over as many windows as the context needs.

    `model_dir_or_model`: a saved model folder (runs/NAME/model; its run's settings apply) or a loaded
    `*ForQuestionAnswering` model, then with `tokenizer` (default: loaded from the model's folder).
    `n_best` and keyword `settings` (any `PredictSettings` field, e.g. max_seq_length=128) override.
    """
    if isinstance(model_dir_or_model, (str, Path)):
        base, _ = run_settings(model_dir_or_model)
        model, own_tokenizer = load_model(model_dir_or_model)
        tokenizer = tokenizer or own_tokenizer
    else:
        base, model = PredictSettings(), model_dir_or_model
        if tokenizer is None:
            from transformers import AutoTokenizer

            if not getattr(model, "name_or_path", ""):
                raise ValueError("answer(): this model was not loaded from a folder; pass its tokenizer=")
            tokenizer = AutoTokenizer.from_pretrained(model.name_or_path)
    if n_best is not None:
        settings["n_best"] = n_best
    unknown = set(settings) - {f.name for f in dataclasses.fields(PredictSettings)}
    if unknown:
        raise TypeError(f"answer() got unknown settings: {', '.join(sorted(unknown))}")
    resolved = _checked(base, settings)
    example = QAExample(id="q", title="", context=context, question=question)
    predictions, nbest = predict_examples(model, tokenizer, [example], resolved)
    text = predictions["q"]
    # The prediction is the best span, or (v2, null won) the empty answer: find its n-best entry.
    entry = next(e for e in nbest["q"] if (e.start_char < 0) == (text == ""))
    return QAResult(text, entry.start_char, entry.end_char, entry.start_logit + entry.end_logit, entry.probability)


# --- command line -------------------------------------------------------------------------------

class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # a flag mistake is one line and exit 2, not a usage screen
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="python -m lit_rcqa.predict", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="saved model folder (runs/NAME/model) or a run folder (runs/NAME)")
    p.add_argument("--data", required=True, help="SQuAD v1.1/v2.0 JSON (or .json.gz) or DuoRC JSON; gold answers optional")
    p.add_argument("--out", default="predictions.json",
                   help="predictions file (default: predictions.json); the n-best lists go beside it, as "
                        "nbest_<name> (nbest_predictions.json)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    group = p.add_argument_group("settings (default: the run's config.yaml beside the model folder, else train.py's)")
    for name, kind in (("max_seq_length", int), ("doc_stride", int), ("max_query_length", int), ("n_best", int),
                       ("max_answer_length", int), ("null_threshold", float), ("batch_size", int)):
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None)
    group.add_argument("--version-2", dest="version_2", action=argparse.BooleanOptionalAction, default=None,
                       help="allow the empty (no-answer) prediction (SQuAD v2.0)")
    group.add_argument("--pad-to-max-length", dest="pad_to_max_length", action=argparse.BooleanOptionalAction,
                       default=None)
    return p


def nbest_path(out: Path) -> Path:
    """Where the n-best lists go: beside `out`, named nbest_<out's name>."""
    return out.with_name(f"nbest_{out.name}")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: unknown device {name!r} (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available")
    return device


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupted)  # a kill ends like Ctrl-C: one line, nothing written
    try:
        return _run(args)
    except UserError as err:
        print(f"predict: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("predict: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from lit_rcqa.data.load import load_examples
    from lit_rcqa.runs import write_json_atomic

    model_dir = Path(args.model)
    if (model_dir / "model" / "config.json").is_file():  # a run folder: its model/
        model_dir = model_dir / "model"
    out = Path(args.out)
    outputs = (out, nbest_path(out))
    if not args.overwrite:
        for path in outputs:
            if path.exists():
                raise UserError(f"{path}: already exists; choose another --out or pass --overwrite")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    base, source = run_settings(model_dir)
    flags = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(PredictSettings)}
             and v is not None}
    try:
        settings = _checked(base, flags)
    except UserError as err:
        raise UserError(f"--{str(err).replace('_', '-')}") from None
    device = _device(args.device)
    examples = load_examples(args.data, mode="predict").examples
    if not examples:
        raise UserError(f"{args.data}: no questions to answer")
    model, tokenizer = load_model(model_dir)
    try:
        predictions, nbest = predict_examples(model.to(device), tokenizer, examples, settings)
    except ValueError as err:  # the data and the window settings disagree (a question too long, ...)
        raise UserError(f"{args.data}: {err}") from None
    # The forms train.py writes (lit_rcqa/outputs.py): {"id": "text"} and {"id": [NBestEntry fields]}.
    write_json_atomic(outputs[1], {k: [dataclasses.asdict(e) for e in v] for k, v in nbest.items()})
    write_json_atomic(outputs[0], predictions)  # last: its presence means both are complete
    used = f"settings from {source}" if source else "default settings"
    print(f"{len(predictions)} questions answered ({used}{', flags: ' + ', '.join(flags) if flags else ''}) "
          f"-> {outputs[0]}, {outputs[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
