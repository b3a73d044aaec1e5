"""Every analysis of the stored IG records in one streaming pass: tables, figures, one report, the tracker.

`analyze.py` calls `run_analyses(lambda: store.iter_records(out), out, ...)` after IG. Records stream by
once; each requested analysis (see `registry`: the analyses register themselves) keeps only a running
accumulator (plus the few examples shown as t-SNE plots and highlighted passages), so memory stays flat
however many examples there are. Outputs: `<out>/figures/*.png`, `<out>/tables/*.{csv,json}` (with
`examples`: one row per analysed example), `<out>/report.html` (self-contained: see lit_rcqa.plots.report),
all sent to `logger` when given (call from rank 0 only) through a `tracking.Dashboard`: per-layer figures
under one key stepped by layer. Returns the headline numbers.
"""

from __future__ import annotations

import dataclasses
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from lit_rcqa import tracking
from lit_rcqa.analysis import registry
from lit_rcqa.analysis.artifacts import ArtifactWriter
from lit_rcqa.analysis.registry import Context, Item
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.postprocess import DEFAULT_POSTPROCESS, PostprocessSettings
from lit_rcqa.plots.report import Section, render_report


def __getattr__(name: str):
    if name == "ALL_ANALYSES":  # the choosable names, as registered now (kept for callers of the old constant)
        return registry.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_check_analyses = registry.check  # the old name of the one validation


def select_layers(record: AttributionRecord, layers: Sequence[str] | None) -> AttributionRecord:
    """The record restricted to `layers` (canonical names, in the given order); all of them if None."""
    if layers is None or list(layers) == list(record.layers):
        return record
    missing = [name for name in layers if name not in record.layers]
    if missing:
        raise UserError(f"layers {missing} were not scored for {record.example_id!r} (scored: {record.layers})")
    rows = [record.layers.index(name) for name in layers]
    return dataclasses.replace(record, layers=list(layers), importance=record.importance[rows],
                               signed=record.signed[rows], delta=np.asarray(record.delta)[rows],
                               steps=np.asarray(record.steps)[rows])


class AnalysisPass:
    """The accumulators of one streaming pass: one per selected analysis, fed every record in registry order."""

    def __init__(self, context: Context, chosen: Sequence[str]):
        self.context = context
        self.analyses = registry.selected(chosen)
        self.running = {a.name: a.start(context) for a in self.analyses}
        self.n = 0
        self.n_nbest = 0   # records whose confidence is their n-best probability

    def add(self, record: AttributionRecord, scored: list[str], confidence: float, nbest: bool) -> None:
        item = Item(record, scored, confidence, nbest)
        for acc in self.running.values():
            acc.add(item)
        self.n += 1
        self.n_nbest += nbest


def _confidence(record: AttributionRecord, nbest_probability: Mapping[str, float] | None) -> tuple[float, bool]:
    """(confidence, whether it is the n-best probability): the record's own n-best probability, else the one given
    by id, else the softmax start × end probability of the predicted span."""
    value = getattr(record, "nbest_probability", None)  # a field of records written since store schema 3
    if value is None and nbest_probability is not None:
        value = nbest_probability.get(record.example_id)
    if value is None:
        return record.start_prob * record.end_prob, False
    return float(value), True


def run_analyses(records: Callable[[], Iterable[AttributionRecord]], out_dir: Path, *,
                 analyses: Sequence[str] | None = None, hidden: Mapping[str, np.ndarray] | None = None,
                 model=None, nbest_probability: Mapping[str, float] | None = None,
                 layers: Sequence[str] | None = None, top_k: int = 5, jsd_k: Sequence[int] = (2, 5),
                 context_window: int = 5, max_examples: int | None = 1000, tsne_examples: int = 3,
                 html_examples: int = 5, run_info: Mapping[str, Any] | None = None, logger=None,
                 progress: bool = True, total: int | None = None,
                 postprocess: PostprocessSettings = DEFAULT_POSTPROCESS) -> dict:
    """Run the chosen analyses (default: every registered one) over (at most `max_examples` of) the records;
    write, log and summarise them.

    `nbest_probability` ({id: probability}) is only read for records that do not carry their own.
    `total`: how many records there are, when the caller knows (the progress bar's total); else unknown.
    `postprocess`: the training run's post-processing (`TrainedRun.postprocess`): analyses that re-run the
    model find its answers as the run did.
    """
    chosen = registry.check(registry.names() if analyses is None else analyses)
    # 1. one streaming pass: every accumulator sees each record once
    state: AnalysisPass | None = None
    stream = records() if max_examples is None else islice(records(), max_examples)
    if total is not None and max_examples is not None:
        total = min(total, max_examples)
    for record in tqdm(stream, total=total, disable=not progress, desc="analyses", unit="ex"):
        scored = list(record.layers)
        record = select_layers(record, layers)
        if state is None:
            state = AnalysisPass(Context(tuple(record.layers), top_k, tuple(jsd_k), context_window, model, hidden,
                                         tsne_examples, html_examples, progress, postprocess), chosen)
        state.add(record, scored, *_confidence(record, nbest_probability))
    if state is None:
        raise UserError(f"no attribution records to analyse for {out_dir} (run IG first, or check --out)")
    layer_names = list(state.context.layers)
    dashboard = tracking.Dashboard(logger, layer_names)
    out = ArtifactWriter(Path(out_dir), dashboard)
    # 2. each analysis: tables, figures and tracker plots, a report section, headline numbers
    summary: dict[str, Any] = {"n_examples": state.n, "layers": layer_names, "analyses": chosen, "notes": []}
    sections = []
    for analysis in state.analyses:
        result = state.running[analysis.name].finish(out)
        summary["notes"] += result.notes
        if result.headline is not None:
            summary[analysis.name] = result.headline
        if result.section is not None:
            sections.append(result.section)
    # 3. the report, then the tracker's summary
    settings = {**dict(run_info or {}), "examples analysed": state.n, "layers": layer_names, "analyses": chosen,
                "top-k words": top_k, "JSD k": list(jsd_k), "context window": context_window,
                "max examples": max_examples, "confidence": "n-best probability" if state.n_nbest
                else "softmax start × end probability of the predicted span"}
    if summary["notes"]:
        sections.insert(0, Section("Notes", "Analyses that were skipped or limited, and why.",
                                   notes=list(summary["notes"])))
    images = {f.path: (out.out_dir / f.path).read_bytes() for s in sections for f in s.figures}
    out.page("report.html", render_report(sections, settings, images=images), log_name="report")
    dashboard.flush()
    summary["out_dir"] = str(out.out_dir)
    summary["files"] = list(out.files)
    tracking.log_summary(logger, flatten(summary))
    return summary


def flatten(summary: Mapping[str, Any], prefix: str = "analysis") -> dict[str, float]:
    """Nested summary -> {"analysis/roles/answer/embeddings": 38.1, …}: finite numbers only."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value):
            flat[name] = float(value)
    return flat
