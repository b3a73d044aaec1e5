"""Ground truth on the synthetic diagnostic set: how much IG mass each layer puts on the supporting sentence.

Each synthetic example names the char span of the sentence that answers the question. Per layer we
measure the share of the (normalised) passage importance on tokens that overlap that span, and,
as the chance level to read it against, the share of passage tokens inside the span.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lit_rcqa.analysis.divergence import normalize, passage_importance
from lit_rcqa.analysis.registry import Analysis, Context, Output, PerRecord, register
from lit_rcqa.analysis.sections import by_layer, layer_rows, series
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.plots.report import Section


def tokens_in_span(offsets: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """[P, 2] char offsets -> [P] bool: the token overlaps the char span [start, end).

    Tokens without a span (start < 0) are never inside.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    start, end = span
    if not 0 <= start <= end:
        raise ValueError(f"invalid evidence span {span}")
    return (offsets[:, 0] >= 0) & (offsets[:, 0] < end) & (offsets[:, 1] > start)


def evidence_share(importance: np.ndarray, offsets: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """[n_layers, P] raw passage importances, [P, 2] offsets -> [n_layers] share of mass inside the span."""
    inside = tokens_in_span(offsets, span)  # [P]
    return normalize(importance)[:, inside].sum(axis=1)


def record_evidence_share(record: AttributionRecord) -> np.ndarray:
    """[n_layers] share of the record's passage importance on its evidence sentence."""
    if record.evidence_span is None:
        raise ValueError(f"record {record.example_id!r} has no evidence span (only the synthetic set has one)")
    offsets = record.offsets[record.passage_start:record.passage_end]
    return evidence_share(passage_importance(record), offsets, record.evidence_span)


@dataclass
class EvidenceAccumulator:
    """Mean evidence share per layer over records (records without an evidence span are counted as skipped)."""

    layers: list[str]
    total: np.ndarray | None = field(default=None, repr=False)  # [n_layers] running sum of shares
    chance_total: float = 0.0        # running sum of the share of passage tokens inside the span
    count: int = 0
    skipped: int = 0

    def add(self, record: AttributionRecord) -> None:
        if list(record.layers) != list(self.layers):
            raise ValueError(f"record {record.example_id!r} has layers {record.layers}, expected {self.layers}")
        if record.evidence_span is None:
            self.skipped += 1
            return
        share = record_evidence_share(record)
        self.total = share.copy() if self.total is None else self.total + share
        inside = tokens_in_span(record.offsets[record.passage_start:record.passage_end], record.evidence_span)
        self.chance_total += float(inside.mean()) if inside.size else 0.0
        self.count += 1

    def mean(self) -> np.ndarray:
        """[n_layers] mean share of IG mass on the evidence sentence."""
        if self.count == 0:
            raise ValueError(f"no records with an evidence span were added ({self.skipped} without one)")
        return self.total / self.count

    def chance(self) -> float:
        """Mean share of passage tokens inside the evidence sentence: what a uniform layer would score."""
        if self.count == 0:
            raise ValueError("no records with an evidence span were added")
        return self.chance_total / self.count


# --- the "evidence" analysis -------------------------------------------------------------------------------
class _EvidenceAnalysis(PerRecord):
    @staticmethod
    def statistic(context: Context):
        return EvidenceAccumulator(list(context.layers))

    def finish(self, out) -> Output:
        from lit_rcqa.plots.layers import plot_layer_series

        section = Section("Ground truth: IG mass on the supporting sentence",
                          "Share of each layer's passage importance on the sentence that answers the question "
                          "(synthetic set); 'chance' is what a layer spreading importance evenly over the passage "
                          "would score.")
        acc, layers = self.acc, self.acc.layers
        if acc.count == 0:
            section.notes.append("skipped: no record has an evidence span (only the synthetic set has one)")
            return Output(section, notes=["evidence skipped: no record has an evidence span"])
        share, chance = acc.mean(), acc.chance()
        lines = {"IG mass on evidence": share, "chance": np.full(len(share), chance)}
        title, y = "IG mass on the supporting sentence", "share of passage importance"
        section.figures.append(out.figure("evidence", plot_layer_series(lines, layers, y, title)))
        series(out, "evidence", lines, title, y)
        section.tables.append(out.table("evidence", ["layer", "share", "chance"],
                                        layer_rows(layers, share, np.full(len(share), chance)),
                                        meta={"n_examples": acc.count, "skipped": acc.skipped}))
        return Output(section, {"share": by_layer(layers, share), "chance": chance})


register(Analysis("evidence", "IG mass on the sentence that answers the question (synthetic set only)",
                  _EvidenceAnalysis))
