"""An analysis registered from outside the package runs like a built-in: its table, its report section, its
tracker plot and its headline numbers, with no other file edited; the CLI's names, help and validation follow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lit_rcqa.analysis import registry
from lit_rcqa.analysis.pipeline import run_analyses
from lit_rcqa.analysis.registry import Analysis, Output
from lit_rcqa.errors import UserError
from lit_rcqa.plots.report import Section
from tests.analysis.records import make_record

LAYERS = ["embeddings", "layer_01", "layer_02"]


class PassageLength:
    """Toy analysis: per layer, the mean importance over the passage, and how many records it saw."""

    def __init__(self, context):
        self.layers = list(context.layers)
        self.total, self.n = np.zeros(len(self.layers)), 0

    def add(self, item):
        record = item.record
        self.total += record.importance[:, record.passage_start:record.passage_end].mean(axis=1)
        self.n += 1

    def finish(self, out):
        mean = self.total / self.n
        section = Section("Toy: mean passage importance", "a test's own analysis")
        section.tables.append(out.table("toy_mean", ["layer", "mean"], [[n, m] for n, m in zip(self.layers, mean)]))
        out.tracker.layer_series(f"{out.prefix}/toy_mean", {"mean": mean}, "Toy mean", "importance")
        return Output(section, {"n": self.n, "mean": dict(zip(self.layers, mean.tolist()))})


class _Experiment:
    def __init__(self):
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag, value, global_step=0):
        self.scalars.append((tag, float(value), global_step))

    def add_text(self, *args, **kwargs):
        pass

    def add_image(self, *args, **kwargs):
        pass


class TensorBoardLogger:
    """Stands in for Lightning's logger of that name: the Dashboard draws layer series as scalars on it."""

    def __init__(self):
        self.experiment, self.metrics, self.saved = _Experiment(), {}, 0

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def save(self):
        self.saved += 1


@pytest.fixture
def toy():
    analysis = registry.register(Analysis("toy", "the mean passage importance per layer", PassageLength))
    yield analysis
    registry.unregister("toy")


def records(n=4):
    rng = np.random.default_rng(1)
    context = "Denver scored 24 points . Carolina scored ten points ."
    return [make_record("Who scored ?", context, rng.random((len(LAYERS), len(context.split()))), pred_words=(0, 0),
                        example_id=f"r{i}") for i in range(n)]


def test_a_registered_analysis_writes_its_table_section_tracker_plot_and_summary(toy, tmp_path):
    recs = records()
    logger = TensorBoardLogger()
    summary = run_analyses(lambda: iter(recs), tmp_path, analyses=["roles", "toy"], logger=logger, progress=False)

    expected = np.mean([r.importance[:, r.passage_start:r.passage_end].mean(axis=1) for r in recs], axis=0)
    table = json.loads((tmp_path / "tables" / "toy_mean.json").read_text(encoding="utf-8"))
    assert [row["layer"] for row in table["rows"]] == LAYERS
    np.testing.assert_allclose([row["mean"] for row in table["rows"]], expected, rtol=1e-6)
    assert (tmp_path / "tables" / "toy_mean.csv").is_file()

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Toy: mean passage importance" in page and 'data-name="toy_mean"' in page
    # its section comes after the built-in ones registered before it
    assert page.index("Word roles") < page.index("Completeness of the attributions") < page.index("Toy: mean")

    toy_scalars = [(step, value) for tag, value, step in logger.experiment.scalars if tag == "analysis/toy_mean/mean"]
    assert [s for s, _ in toy_scalars] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in toy_scalars], expected, rtol=1e-6)
    assert summary["toy"]["n"] == 4 and summary["analyses"] == ["roles", "toy"]
    assert logger.metrics["summary/analysis/toy/n"] == 4.0
    assert logger.metrics["summary/analysis/toy/mean/layer_02"] == pytest.approx(expected[2])


def test_names_help_and_validation_come_from_the_registry(toy):
    assert registry.names()[-1] == "toy" and "toy: the mean passage importance per layer" in registry.help_text()
    assert registry.parse("all")[-1] == "toy" and registry.parse("TOY, roles") == ["roles", "toy"]
    assert registry.parse("none") == []
    with pytest.raises(UserError, match=r"unknown analyses \['nope'\]; choose from jsd, .*, html, toy, all, none$"):
        registry.parse("jsd,nope")
    with pytest.raises(UserError, match=r"unknown analyses \['attention'\]; choose from jsd, .*, html, toy"):
        registry.check(["toy", "attention"])
    with pytest.raises(ValueError, match="registered already"):
        registry.register(Analysis("toy", "again", PassageLength))


def test_an_unregistered_analysis_is_gone_and_the_always_on_ones_are_no_choice():
    assert "toy" not in registry.names()
    assert registry.names() == ("jsd", "roles", "quantifiers", "tsne", "flips", "evidence", "html")
    with pytest.raises(UserError, match="unknown analyses"):
        registry.check(["completeness"])
    assert [a.name for a in registry.selected([])] == ["completeness", "examples"]
