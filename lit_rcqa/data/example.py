"""The one in-memory form of a QA example, whatever file it came from (SQuAD, DuoRC, synthetic)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    text: str
    answer_start: int  # character offset of `text` in the context; -1 when it could not be located


@dataclass(frozen=True)
class QAExample:
    id: str
    title: str
    context: str
    question: str
    answers: tuple[Answer, ...] = ()  # gold answers; empty for an unanswerable question
    is_impossible: bool = False
    # Synthetic diagnostic set only: the supporting sentence, as an index and a [start, end) char span.
    evidence_sentence: int | None = None
    evidence_span: tuple[int, int] | None = None


@dataclass
class LoadedData:
    """What a reader returns: the examples, and how many records were skipped, by reason."""

    examples: list[QAExample]
    skipped: dict[str, int] = field(default_factory=dict)
    version: str = "1.1"  # "1.1", "2.0" (has unanswerable questions) or "duorc"

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())
