"""Every analysis of the stored IG records in one streaming pass: tables, figures, one report, the tracker.

`analyze.py` calls `run_analyses(lambda: store.iter_records(out), out, ...)` after IG. Records stream by
once; each requested analysis keeps only a running accumulator (plus the few examples shown as t-SNE
plots and highlighted passages), so memory stays flat however many examples there are. Outputs:
`<out>/figures/*.png`, `<out>/tables/*.{csv,json}` (with `examples`: one row per analysed example),
`<out>/report.html` (self-contained: see lit_rcqa.plots.report), all sent to `logger` when given (call
from rank 0 only) through a `tracking.Dashboard`: per-layer figures under one key stepped by layer.
Returns the headline numbers.
"""

from __future__ import annotations

import dataclasses
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from lit_rcqa import tracking
from lit_rcqa.analysis.artifacts import ArtifactWriter
from lit_rcqa.analysis.completeness import CompletenessAccumulator
from lit_rcqa.analysis.divergence import JSDAccumulator
from lit_rcqa.analysis.evidence import EvidenceAccumulator
from lit_rcqa.analysis.examples import example_columns, example_row
from lit_rcqa.analysis.flips import FlipAccumulator
from lit_rcqa.analysis.quantifiers import NumericShareAccumulator, OutcomeAccumulator, is_quantifier_question
from lit_rcqa.analysis.roles import RoleAccumulator
from lit_rcqa.analysis.sections import SECTION_BUILDERS, completeness_section
from lit_rcqa.analysis.words import record_words
from lit_rcqa.attribution.layers import EncoderAdapter
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.metrics import exact_match_score, max_over_golds
from lit_rcqa.plots.highlight import highlight_html
from lit_rcqa.plots.report import Section, render_report

ALL_ANALYSES: tuple[str, ...] = ("jsd", "roles", "quantifiers", "tsne", "flips", "evidence", "html")


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


def hidden_rows(hidden: np.ndarray, scored: Sequence[str], wanted: Sequence[str], n_tokens: int) -> np.ndarray | None:
    """[n, T', H] stored hidden states -> [len(wanted), n_tokens, H], or None when they do not cover them.

    The store keeps either one row per scored layer (n == len(scored)) or one per model layer 0 … L.
    """
    h = np.asarray(hidden)
    if h.ndim != 3 or h.shape[1] < n_tokens:
        return None
    if h.shape[0] == len(scored):
        rows = [list(scored).index(name) for name in wanted]
    else:
        rows = [0 if name == "embeddings" else int(name.rsplit("_", 1)[1]) for name in wanted]
        if max(rows) >= h.shape[0]:
            return None
    return h[rows, :n_tokens]


def _check_analyses(analyses: Sequence[str]) -> list[str]:
    chosen = [a.strip() for a in analyses if a.strip()]
    unknown = sorted(set(chosen) - set(ALL_ANALYSES))
    if unknown:
        raise UserError(f"unknown analyses {unknown}; choose from {', '.join(ALL_ANALYSES)}")
    return [a for a in ALL_ANALYSES if a in chosen]


@dataclasses.dataclass
class _Pass:
    """The accumulators of one streaming pass over the records."""

    layers: list[str]
    chosen: list[str]
    top_k: int
    jsd_k: Sequence[int]
    window: int
    adapter: Any = None
    n: int = 0

    def __post_init__(self):
        L = self.layers
        self.jsd = {"jsd_all": JSDAccumulator(L, "all")}
        for k in self.jsd_k:
            for variant in ("topk_retained", "topk_removed"):
                self.jsd[f"jsd_{variant}_k{k}"] = JSDAccumulator(L, variant, k)
        self.roles = RoleAccumulator(L, self.top_k, self.window)
        self.numeric = {group: NumericShareAccumulator(L, self.top_k) for group in ("quantifier", "other")}
        self.outcomes = OutcomeAccumulator()   # (is quantifier, EM %, confidence) per question
        self.flips = FlipAccumulator(L)
        self.flips_without_ids = 0
        self.evidence = EvidenceAccumulator(L)
        self.completeness = CompletenessAccumulator(L)
        self.tsne_jobs: list[tuple[AttributionRecord, np.ndarray]] = []
        self.highlights: list[str] = []
        self.highlight_inputs: list[tuple] = []   # (context, word spans, [L, W] importance, title) per shown example
        self.example_columns = example_columns(self.layers)
        self.examples: list[list] = []            # one row per record (analysis.examples)

    def add(self, record: AttributionRecord, scored: list[str], hidden, confidence, tsne_examples, html_examples):
        self.n += 1
        self.completeness.add(record)
        if "jsd" in self.chosen:
            for acc in self.jsd.values():
                acc.add(record)
        if "roles" in self.chosen:
            self.roles.add(record)
        if "quantifiers" in self.chosen:
            quantifier = is_quantifier_question(record.question)
            self.numeric["quantifier" if quantifier else "other"].add(record)
            em = 100.0 * max_over_golds(exact_match_score, record.pred_text, list(record.gold_texts))
            self.outcomes.add(quantifier, em, confidence)
        flips = None
        if "flips" in self.chosen and self.adapter is not None:
            if record.input_ids is None:
                self.flips_without_ids += 1
            else:
                flips = self.flips.add(record, self.adapter)
        words = record_words(record)
        self.examples.append(example_row(record, words, confidence, self.top_k, flips))
        if "evidence" in self.chosen:
            self.evidence.add(record)
        if "tsne" in self.chosen and len(self.tsne_jobs) < tsne_examples and hidden is not None:
            h = hidden.get(record.example_id)
            h = None if h is None else hidden_rows(h, scored, record.layers, len(record.tokens))
            if h is not None:
                self.tsne_jobs.append((record, h))
        if "html" in self.chosen and len(self.highlights) < html_examples:
            gold = " / ".join(record.gold_texts) or "n/a"
            title = f"{record.example_id}: {record.question} — predicted: {record.pred_text} — gold: {gold}"
            self.highlights.append(highlight_html(record.context, words.spans, words.importance, record.layers,
                                                  self.top_k, title))
            self.highlight_inputs.append((record.context, words.spans, words.importance, title))


def run_analyses(records: Callable[[], Iterable[AttributionRecord]], out_dir: Path, *,
                 analyses: Sequence[str] = ALL_ANALYSES, hidden: Mapping[str, np.ndarray] | None = None,
                 model=None, nbest_probability: Mapping[str, float] | None = None,
                 layers: Sequence[str] | None = None, top_k: int = 5, jsd_k: Sequence[int] = (2, 5),
                 context_window: int = 5, max_examples: int | None = 1000, tsne_examples: int = 3,
                 html_examples: int = 5, run_info: Mapping[str, Any] | None = None, logger=None,
                 progress: bool = True, total: int | None = None) -> dict:
    """Run the chosen analyses over (at most `max_examples` of) the records; write, log and summarise them.

    `total`: how many records there are, when the caller knows (the progress bar's total); else unknown.
    """
    chosen = _check_analyses(analyses)
    adapter = EncoderAdapter(model) if "flips" in chosen and model is not None else None
    # 1. one streaming pass: every accumulator sees each record once
    state: _Pass | None = None
    missing_confidence = 0
    stream = records() if max_examples is None else islice(records(), max_examples)
    if total is not None and max_examples is not None:
        total = min(total, max_examples)
    for record in tqdm(stream, total=total, disable=not progress, desc="analyses", unit="ex"):
        scored = list(record.layers)
        record = select_layers(record, layers)
        if state is None:
            state = _Pass(list(record.layers), chosen, top_k, tuple(jsd_k), context_window, adapter)
        if nbest_probability is not None and record.example_id in nbest_probability:
            confidence = float(nbest_probability[record.example_id])
        else:
            missing_confidence += nbest_probability is not None
            confidence = record.start_prob * record.end_prob
        state.add(record, scored, hidden, confidence, tsne_examples, html_examples)
    if state is None:
        raise UserError(f"no attribution records to analyse for {out_dir} (run IG first, or check --out)")
    dashboard = tracking.Dashboard(logger, state.layers)
    out = ArtifactWriter(Path(out_dir), dashboard)
    # 2. each analysis: tables and figures, a report section, headline numbers
    summary: dict[str, Any] = {"n_examples": state.n, "layers": state.layers, "analyses": chosen, "notes": []}
    if "flips" in chosen and model is None:
        summary["notes"].append("decision flips skipped: no model was given")
    if missing_confidence and "quantifiers" in chosen:
        summary["notes"].append(f"{missing_confidence} examples had no n-best probability; their confidence is "
                                "the softmax start × end probability of the predicted span")
    sections = [SECTION_BUILDERS[name](state, out, summary, progress=progress) for name in chosen]
    sections.append(completeness_section(state, out, summary))
    out.table("examples", state.example_columns, state.examples,
              meta={"top_k": top_k, "em_f1": "best over the gold answers, SQuAD v1.1 rules, in %",
                    "flip": "zeroing the layer's top-1 passage token changed the predicted span (null: not run)",
                    "gold": "gold answers joined by ' | '"})
    # 3. the report, then the tracker's summary
    settings = {**dict(run_info or {}), "examples analysed": state.n, "layers": state.layers, "analyses": chosen,
                "top-k words": top_k, "JSD k": list(jsd_k), "context window": context_window,
                "max examples": max_examples, "confidence": "n-best probability" if nbest_probability is not None
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
