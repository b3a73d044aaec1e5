"""The "html" analysis: the first few passages with each layer's top-k words highlighted.

The report shows every layer of each example (`plots.highlight`); `highlights.html` holds the same on its own
page; the tracker gets one page per layer with every shown example at that layer (its layer slider).
"""

from __future__ import annotations

from lit_rcqa.analysis.registry import Analysis, Context, Item, Output, register
from lit_rcqa.plots.highlight import highlight_html
from lit_rcqa.plots.report import Section


class _HighlightsAnalysis:
    def __init__(self, context: Context):
        self.layers, self.k, self.limit = list(context.layers), context.top_k, context.html_examples
        self.pages: list[str] = []     # each shown example, every layer
        self.inputs: list[tuple] = []  # (context, word spans, [L, W] importance, title) per shown example

    def add(self, item: Item) -> None:
        if len(self.pages) >= self.limit:
            return
        record, words = item.record, item.words
        gold = " / ".join(record.gold_texts) or "n/a"
        title = f"{record.example_id}: {record.question} — predicted: {record.pred_text} — gold: {gold}"
        self.pages.append(highlight_html(record.context, words.spans, words.importance, record.layers, self.k, title))
        self.inputs.append((record.context, words.spans, words.importance, title))

    def finish(self, out) -> Output:
        section = Section("Examples: each layer's top words",
                          f"The passage once per layer with its top-{self.k} words highlighted, darker for a "
                          "higher rank (hover for the importance); the title gives the question, the predicted and "
                          "the gold answer.", html="\n".join(self.pages))
        for i, name in enumerate(self.layers):  # the tracker's per-layer view: every shown example at this layer
            if self.inputs:
                out.tracker.html(f"{out.prefix}/highlights_by_layer", "\n".join(
                    highlight_html(context, spans, importance[i:i + 1], [name], self.k, title)
                    for context, spans, importance, title in self.inputs), layer=name)
        if self.pages:
            out.page("highlights.html", '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                     f"<title>Top words per layer</title></head><body>\n{section.html}\n</body></html>\n",
                     log_name="highlights")
        return Output(section)


register(Analysis("html", "the first passages with each layer's top-k words highlighted", _HighlightsAnalysis))
