"""SQuAD-form datasets from the Hugging Face hub, for users who are online (`data.hf_dataset`)."""

from __future__ import annotations

from lit_rcqa.data.example import Answer, QAExample
from lit_rcqa.errors import UserError


def _to_examples(rows) -> list[QAExample]:
    examples = []
    for row in rows:
        answers = tuple(Answer(t, int(s)) for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"]))
        examples.append(QAExample(id=str(row["id"]), title=row.get("title", ""), context=row["context"],
                                  question=row["question"], answers=answers, is_impossible=not answers))
    return examples


def load_hub_dataset(name: str) -> tuple[list[QAExample], list[QAExample]]:
    """(train, validation) examples of a hub dataset in the SQuAD layout, e.g. "squad" or "squad_v2"."""
    try:
        import datasets
    except ImportError:
        raise UserError(f"data.hf_dataset={name!r} needs the `datasets` package: pip install datasets") from None
    try:
        ds = datasets.load_dataset(name)
    except Exception as err:  # the hub raises many types; all mean "cannot get it"
        raise UserError(f"data.hf_dataset={name!r}: cannot load ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    return _to_examples(ds["train"]), _to_examples(ds["validation"])
