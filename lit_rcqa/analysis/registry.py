"""The analyses as a registry: each analysis module registers one `Analysis`; everything else reads the registry.

An analysis is a name, a one-line help, and `start(context) -> accumulator`. The pipeline starts one
accumulator per analysis for a pass over the records, feeds it every record (`add(item)`), then asks it for
its outputs (`finish(out) -> Output`): tables and figures written through the `ArtifactWriter`, native tracker
plots through `out.tracker` (a `tracking.Dashboard`), a report section, headline numbers (the summary, and
through it the tracker's summary) and notes. The CLI's list of valid names, its help and the validation of
`--analyses` come from here too. A new analysis is one module that calls `register`, nothing else:

    class Counter:
        def __init__(self, context): self.n = 0
        def add(self, item): self.n += 1
        def finish(self, out): return Output(Section("Count"), {"n": self.n})
    register(Analysis("count", "counts the records", Counter))

Importing `lit_rcqa.analysis` registers the built-ins, in the order their sections appear in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.postprocess import DEFAULT_POSTPROCESS, PostprocessSettings

if TYPE_CHECKING:  # the writer and the report import matplotlib; the registry itself stays light
    from lit_rcqa.analysis.artifacts import ArtifactWriter
    from lit_rcqa.analysis.flips import FlipResult
    from lit_rcqa.analysis.words import PassageWords
    from lit_rcqa.plots.report import Section


@dataclass(frozen=True)
class Context:
    """What an analysis may read when it starts: the pass's settings, never a record."""

    layers: tuple[str, ...]             # canonical names of the analysed layers, in the records' order
    top_k: int = 5                      # words per layer counted as its "top" (roles, quantifiers, tables)
    jsd_k: tuple[int, ...] = (2, 5)     # k of the top-k JSD variants
    window: int = 5                     # words either side of the answer that count as its context
    model: Any = None                   # the QA model, for analyses that re-run it (flips); None if not given
    hidden: Mapping[str, np.ndarray] | None = None  # stored hidden states by example id (t-SNE)
    tsne_examples: int = 3              # examples shown as t-SNE plots
    html_examples: int = 5              # examples shown as highlighted passages
    progress: bool = True               # progress bars for slow outputs
    postprocess: PostprocessSettings = DEFAULT_POSTPROCESS  # the training run's (flips find spans as it did)


@dataclass(eq=False)
class Item:
    """One record as the analyses see it, with what several of them use computed once."""

    record: AttributionRecord           # restricted to the analysed layers
    scored: list[str]                   # the layers the record was scored at (rows of its stored hidden states)
    confidence: float                   # n-best probability of the prediction, else start × end probability
    nbest: bool                         # whether `confidence` is the n-best probability
    flips: FlipResult | None = None     # set by the flips analysis (it runs first), read by the examples table

    @cached_property
    def words(self) -> PassageWords:
        from lit_rcqa.analysis.words import record_words

        return record_words(self.record)


@dataclass
class Output:
    """What one analysis hands back at the end of a pass (its files are already written)."""

    section: Section | None = None          # its part of the report; None: no section
    headline: Mapping[str, Any] | None = None  # summary[name]; its finite numbers go to the tracker's summary
    notes: list[str] = field(default_factory=list)  # skipped or limited, and why: shown first in the report


class Accumulator(Protocol):
    def add(self, item: Item) -> None: ...

    def finish(self, out: ArtifactWriter) -> Output: ...


class PerRecord:
    """Base of an analysis whose running statistic only needs each record: a subclass says which statistic
    (`statistic(context)`, an object with `add(record)`) and writes its outputs in `finish`."""

    def __init__(self, context: Context):
        self.acc = self.statistic(context)

    @staticmethod
    def statistic(context: Context):
        raise NotImplementedError

    def add(self, item: Item) -> None:
        self.acc.add(item.record)


@dataclass(frozen=True)
class Analysis:
    name: str                                   # the --analyses name, also summary[name]
    help: str                                   # one line for the CLI help
    start: Callable[[Context], Accumulator]     # a fresh accumulator for one pass
    always: bool = False                        # runs on every pass and is not a choice (completeness, examples)


_REGISTRY: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    """Add an analysis after those registered so far (its section comes after theirs); names are unique."""
    if analysis.name in _REGISTRY:
        raise ValueError(f"an analysis named {analysis.name!r} is registered already")
    if not analysis.name or not analysis.name.replace("_", "").isalnum():
        raise ValueError(f"analysis names are letters, digits and '_', got {analysis.name!r}")
    _REGISTRY[analysis.name] = analysis
    return analysis


def unregister(name: str) -> None:
    del _REGISTRY[name]


def names() -> tuple[str, ...]:
    """The analyses one can choose (`--analyses`), in report order."""
    return tuple(a.name for a in _REGISTRY.values() if not a.always)


def help_text() -> str:
    """One line per choosable analysis: `name: what it shows`."""
    return "\n".join(f"{a.name}: {a.help}" for a in _REGISTRY.values() if not a.always)


def check(chosen: Sequence[str], *, also: str = "") -> list[str]:
    """The chosen names (blanks ignored) in report order; a UserError naming the choices (and `also`) for any
    other name."""
    wanted = [a.strip() for a in chosen if a.strip()]
    valid = names()
    unknown = sorted(set(wanted) - set(valid))
    if unknown:
        raise UserError(f"unknown analyses {unknown}; choose from {', '.join(valid)}{also}")
    return [a for a in valid if a in wanted]


def parse(spec: str) -> list[str]:
    """A comma-separated `--analyses` value, or 'all' / 'none' (any case) -> the chosen names, in report order."""
    text = spec.strip().lower()
    if text == "all":
        return list(names())
    if text in ("none", ""):
        return []
    return check(text.split(","), also=", all, none")


def selected(chosen: Sequence[str]) -> list[Analysis]:
    """The analyses a pass runs: the chosen ones and every always-on one, in registry order."""
    wanted = set(check(chosen))
    return [a for a in _REGISTRY.values() if a.always or a.name in wanted]
