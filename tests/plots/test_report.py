"""The HTML report: every section, figure and table appears, data is escaped, the page is well-formed."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np

from lit_rcqa.plots.report import FigureRef, Section, TableData, format_value, render_report

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Checker(HTMLParser):
    """Collects tags, text and attributes; fails on a closing tag that does not match the open one."""

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.text, self.attrs = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def sections():
    return [
        Section("Jensen–Shannon divergence", "JSD near 0: the two layers attend to the same passage tokens.",
                figures=[FigureRef("figures/jsd_all.png", "all tokens")],
                tables=[TableData("jsd_all", ["layer", "embeddings", "layer_01"],
                                  [["embeddings", 0.0, 0.25], ["layer_01", 0.25, np.float32(0.0)]],
                                  link="tables/jsd_all.csv")]),
        Section("Evidence", notes=["skipped: no record has an evidence span"]),
        Section("Examples", html='<div class="lit-rcqa-highlight"><mark>ten</mark></div>'),
    ]


def test_report_holds_run_info_every_section_figure_and_table_and_parses():
    page = render_report(sections(), {"model": "tiny-bert", "examples": 6, "layers": ["embeddings", "layer_01"]})
    doc = parse(page)
    text = " ".join(doc.text)
    assert doc.tags[0] == "html" and page.startswith("<!DOCTYPE html>")
    for expected in ("tiny-bert", "Jensen–Shannon divergence", "JSD near 0", "jsd_all", "0.25",
                     "skipped: no record has an evidence span", 'embeddings, layer_01'):
        assert expected in text, expected
    images = [a["src"] for tag, a in doc.attrs if tag == "img"]
    assert images == ["figures/jsd_all.png"]
    assert all(a.get("alt") for tag, a in doc.attrs if tag == "img")
    tables = [a["data-name"] for tag, a in doc.attrs if tag == "table"]
    assert tables == ["run", "jsd_all"]
    assert '<mark>ten</mark>' in page  # trusted highlight markup is kept as markup
    links = {a["href"] for tag, a in doc.attrs if tag == "a"}
    assert {"#jensen-shannon-divergence", "#evidence", "#examples", "tables/jsd_all.csv"} <= links


def test_report_escapes_all_data():
    evil = '<script>alert("x")</script>'
    page = render_report([Section(evil, evil, figures=[FigureRef(f'figures/"{evil}.png', evil)],
                                  tables=[TableData(evil, [evil], [[evil]], link=evil)], notes=[evil])],
                         {evil: evil})
    assert "<script>" not in page
    doc = parse(page)
    assert "script" not in doc.tags
    assert sum(evil in t for t in doc.text) >= 6  # the text still reads as written


def test_format_value():
    assert format_value(np.float64(0.123456)) == "0.1235"
    assert format_value(float("nan")) == "n/a" and format_value(None) == "n/a"
    assert format_value(np.int64(7)) == "7" and format_value(True) == "True"
    assert format_value(float("inf")) == "∞"
    assert format_value({"a": 1}) == '{"a": 1}' and format_value([[1, 2]]) == "[[1, 2]]"
    assert format_value(["embeddings", np.float64(0.5), 3]) == "embeddings, 0.5, 3"
