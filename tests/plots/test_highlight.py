from html.parser import HTMLParser

import numpy as np
import pytest

from lit_rcqa.plots.highlight import highlight_html


class _Collect(HTMLParser):
    """Per <p class=layer>: its full text and the text inside its <mark>s (sup rank numbers dropped)."""

    def __init__(self):
        super().__init__()
        self.layers, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        assert tag != "script"
        self.stack.append(tag)
        if tag == "p":
            self.layers.append({"text": "", "marks": []})
        if tag == "mark":
            self.layers[-1]["marks"].append("")

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag  # well-nested

    def handle_data(self, data):
        if "sup" in self.stack or "style" in self.stack or "p" not in self.stack:
            return
        if self.stack[-1] == "span":
            self.layers[-1]["name"] = data
            return
        self.layers[-1]["text"] += data
        if "mark" in self.stack:
            self.layers[-1]["marks"][-1] += data


def test_highlight_marks_each_layers_top_k_words_and_escapes_everything():
    context = "Tom <b>won</b> & Ann lost"
    spans = np.array([[0, 3], [4, 14], [15, 16], [17, 20], [21, 25]])
    imp = np.array([[0.1, 0.5, 0.0, 0.3, 0.1], [0.6, 0.0, 0.0, 0.1, 0.3]])
    out = highlight_html(context, spans, imp, ["embeddings", "<layer_01>"], top_k=2, title="q & a")
    assert "<b>" not in out and "&lt;b&gt;won&lt;/b&gt;" in out and "&lt;layer_01&gt;" in out
    parser = _Collect()
    parser.feed(out)
    assert parser.stack == []
    first, second = parser.layers
    assert first["text"] == second["text"] == context  # unescaped by the parser: nothing lost or added
    assert (first["name"], second["name"]) == ("embeddings", "<layer_01>")
    assert first["marks"] == ["<b>won</b>", "Ann"]
    assert second["marks"] == ["Tom", "lost"]
    with pytest.raises(ValueError, match="expected"):
        highlight_html(context, spans, imp[:, :3], ["a", "b"], top_k=2)
