"""run_analyses end to end on six hand-made records and a tiny BERT: files, their contents, the report, W&B offline."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from lit_rcqa.analysis.divergence import mean_jsd_matrix
from lit_rcqa.analysis.pipeline import ALL_ANALYSES, run_analyses
from lit_rcqa.analysis.roles import RoleAccumulator
from lit_rcqa.errors import UserError
from tests.analysis.records import make_record
from tests.conftest import make_tiny_qa_model
from tests.plots.test_report import parse

LAYERS = ["embeddings", "layer_01", "layer_02"]
EXAMPLES = [  # question, context, predicted word span, gold, evidence sentence (or None)
    ("How many points did Denver score ?", "Denver scored 24 points . Carolina scored ten points .", (2, 2), "24",
     True),
    ("Who scored ten points ?", "Denver scored 24 points . Carolina scored ten points .", (5, 5), "Carolina", True),
    ("How much did the ticket cost ?", "The ticket cost 5 dollars in 1990 . It rose to twenty later .", (3, 4),
     "5 dollars", False),
    ("Where is the castle ?", "The old castle stands in Prague near the river .", (5, 5), "Prague", False),
    ("What colour is the sky ?", "On clear days the sky is blue and wide .", (6, 6), "green", False),
    ("When did it open ?", "The bridge opened in 1887 after years of work .", (4, 4), "1887", False),
]


def make_records(with_evidence=True):
    rng = np.random.default_rng(0)
    records = []
    for i, (q, c, span, gold, evidence) in enumerate(EXAMPLES):
        n_words = len(c.split())
        imp = rng.random((len(LAYERS), n_words))
        ev = (0, c.index(".") + 1) if evidence and with_evidence else None
        rec = make_record(q, c, imp, pred_words=span, evidence_span=ev, example_id=f"q{i}")
        T = len(rec.tokens)
        ids = rng.integers(1000, 2000, T)
        types = (np.arange(T) >= rec.passage_start).astype(np.int64)
        rec = dataclasses.replace(rec, gold_texts=(gold,), input_ids=ids, token_type_ids=types,
                                  delta=np.array([0.2, 0.01, 0.001]) * (i + 1), steps=np.array([50, 20, 10]))
        records.append(rec)
    return records


class Source:
    """records() as the store offers it: a fresh generator per call; counts the passes."""

    def __init__(self, records):
        self.records, self.calls = records, 0

    def __call__(self):
        self.calls += 1
        return (r for r in self.records)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> dict:
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


PER_LAYER_TABLES = ["jsd_all", "jsd_topk_retained_k2", "jsd_topk_removed_k2", "roles", "quantifiers", "flips",
                    "evidence", "completeness"]


def test_all_analyses_write_every_output_once_over_the_stream(tmp_path):
    records = make_records()
    source = Source(records)
    # hidden states for one example only, stored padded to 4 more positions (t-SNE uses the real tokens)
    hidden = {"q4": np.random.default_rng(2).normal(size=(3, len(records[4].tokens) + 4, 8))}
    summary = run_analyses(source, tmp_path, hidden=hidden, model=make_tiny_qa_model("bert", layers=2),
                           jsd_k=(2,), tsne_examples=2, html_examples=2, run_info={"model": "tiny-bert <test>"},
                           progress=False)
    assert source.calls == 1 and summary["n_examples"] == 6 and summary["layers"] == LAYERS

    figures = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert figures == set(PER_LAYER_TABLES) | {f"tsne_q4_{name}" for name in LAYERS} | {"tsne_q4_grid"}
    for name in PER_LAYER_TABLES:
        rows = read_csv(tmp_path / "tables" / f"{name}.csv")
        assert [r["layer"] for r in rows] == LAYERS, name
        assert [r["layer"] for r in read_json(tmp_path / "tables" / f"{name}.json")["rows"]] == LAYERS, name
    assert [r["group"] for r in read_csv(tmp_path / "tables" / "quantifier_summary.csv")] == ["quantifier", "other"]
    assert not list(tmp_path.rglob("*.tmp-*"))  # atomic writes left no temporaries

    # the numbers are the accumulators' own
    jsd = np.array([[float(r[n]) for n in LAYERS] for r in read_csv(tmp_path / "tables" / "jsd_all.csv")])
    np.testing.assert_allclose(jsd, mean_jsd_matrix(records, LAYERS), atol=1e-12)
    roles = RoleAccumulator(LAYERS, k=5, window=5)
    for r in records:
        roles.add(r)
    table = read_json(tmp_path / "tables" / "roles.json")["rows"]
    np.testing.assert_allclose([[row[c] for c in ("answer", "context", "question", "other")] for row in table],
                               roles.table().shares)
    quantifier = read_json(tmp_path / "tables" / "quantifier_summary.json")["rows"]
    assert quantifier[0]["n"] == 2 and quantifier[0]["em"] == 100.0      # both quantifier answers are right
    assert quantifier[1]["n"] == 4 and quantifier[1]["em"] == 75.0       # "blue" is not "green"
    completeness = read_json(tmp_path / "tables" / "completeness.json")["rows"]
    assert completeness[0]["max"] == pytest.approx(1.2) and completeness[0]["share_above"] == 1.0
    assert completeness[1]["share_above"] == pytest.approx(1 / 6) and completeness[2]["share_above"] == 0
    assert completeness[1]["steps_mean"] == 20
    flips = read_json(tmp_path / "tables" / "flips.json")["rows"]
    assert all(0 <= f["top1_rate"] <= 1 and 0 <= f["random_rate"] <= 1 and f["n"] == 6 for f in flips)
    evidence = read_json(tmp_path / "tables" / "evidence.json")
    assert evidence["meta"]["n_examples"] == 2 and evidence["meta"]["skipped"] == 4

    # the report: run info, every figure and table, the highlighted passages; well-formed
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    parse(page)
    assert "tiny-bert &lt;test&gt;" in page
    images = [a["src"] for tag, a in parse(page).attrs if tag == "img"]
    assert len(images) == len(figures) and all(src.startswith("data:image/png;base64,") for src in images)
    for name in PER_LAYER_TABLES + ["quantifier_summary"]:
        assert f'data-name="{name}"' in page and f"tables/{name}.csv" in page, name
    assert page.count('class="lit-rcqa-highlight"') == 2 and "Carolina" in page
    parse((tmp_path / "highlights.html").read_text(encoding="utf-8"))

    assert sum(summary["roles"][role]["layer_02"] for role in summary["roles"]) == pytest.approx(100.0)
    assert set(summary["jsd"]) == set(PER_LAYER_TABLES[:3])
    assert summary["evidence"]["chance"] > 0 and "report.html" in summary["files"]


def test_a_subset_of_analyses_writes_only_those(tmp_path):
    summary = run_analyses(Source(make_records(with_evidence=False)), tmp_path, analyses=("roles", "flips", "evidence"),
                           progress=False)
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"roles.png", "completeness.png"}
    assert {p.stem for p in (tmp_path / "tables").iterdir()} == {"roles", "completeness", "examples"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "report.html", "tables"]
    notes = " ".join(summary["notes"])
    assert "flips skipped: no model" in notes and "evidence skipped" in notes
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "jsd_all" not in page and "no model was given" in page
    assert "jsd" not in summary and "flips" not in summary and "roles" in summary


def test_layer_selection_and_max_examples(tmp_path):
    source = Source(make_records())
    summary = run_analyses(source, tmp_path, analyses=("jsd", "roles"), layers=["embeddings", "layer_02"],
                           max_examples=4, jsd_k=(3,), progress=False)
    assert summary["n_examples"] == 4
    rows = read_csv(tmp_path / "tables" / "jsd_topk_removed_k3.csv")
    assert [r["layer"] for r in rows] == ["embeddings", "layer_02"]
    assert list(rows[0]) == ["layer", "embeddings", "layer_02"]
    with pytest.raises(UserError, match="not scored"):
        run_analyses(source, tmp_path, analyses=("roles",), layers=["layer_07"], progress=False)


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(UserError, match="unknown analyses"):
        run_analyses(Source(make_records()), tmp_path, analyses=("jsd", "attention"), progress=False)
    with pytest.raises(UserError, match="no attribution records"):
        run_analyses(Source([]), tmp_path, progress=False)
    assert set(ALL_ANALYSES) == {"jsd", "roles", "quantifiers", "tsne", "flips", "evidence", "html"}


def test_wandb_offline_run_holds_the_images_tables_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="lit_rcqa-test")
    try:
        run_analyses(Source(make_records()), tmp_path / "analysis", analyses=("roles", "html"), logger=logger,
                     progress=False)
    finally:
        wandb.finish()
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    media_dir = run_dirs[0] / "files" / "media"
    media = {p.relative_to(media_dir).as_posix() for p in media_dir.rglob("*") if p.is_file()}
    assert any(m.startswith("images/analysis/roles_") for m in media), media
    assert any(m.startswith("table/analysis/tables/roles_") and m.endswith(".table.json") for m in media), media
    assert any(m.startswith("html/analysis/report_") for m in media), media
    keys = (b"analysis/roles", b"analysis/completeness", b"analysis/report", b"analysis/highlights")
    for _ in range(120):  # wandb-core may still be flushing the run file after finish() returns
        data = b"".join(p.read_bytes() for p in run_dirs[0].glob("*.wandb"))
        if all(key in data for key in keys):
            break
        time.sleep(0.25)
    assert [key for key in keys if key not in data] == []


def test_quantifier_confidence_comes_from_the_nbest_probability_where_given(tmp_path):
    summary = run_analyses(Source(make_records()), tmp_path, analyses=("quantifiers",),
                           nbest_probability={"q0": 0.3, "q2": 0.5}, progress=False)
    assert summary["quantifiers"]["quantifier"]["confidence_mean"] == pytest.approx(0.4)   # q0, q2
    assert summary["quantifiers"]["other"]["confidence_mean"] == pytest.approx(0.9 * 0.8)  # start × end fallback
    assert any(note.startswith("4 examples had no n-best probability") for note in summary["notes"])
    assert "n-best probability" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_a_record_carrying_its_nbest_probability_needs_no_mapping(tmp_path):
    records = make_records()
    records[0] = dataclasses.replace(records[0], nbest_probability=0.3)
    records[2] = dataclasses.replace(records[2], nbest_probability=0.5)
    summary = run_analyses(Source(records), tmp_path, analyses=("quantifiers",), nbest_probability={"q0": 0.9},
                           progress=False)  # the record's own value wins over a mapping's
    assert summary["quantifiers"]["quantifier"]["confidence_mean"] == pytest.approx(0.4)   # q0, q2
    assert summary["quantifiers"]["other"]["confidence_mean"] == pytest.approx(0.9 * 0.8)  # start × end fallback
    assert any(note.startswith("4 examples had no n-best probability") for note in summary["notes"])
    rows = read_json(tmp_path / "tables" / "examples.json")["rows"]
    assert [r["confidence"] for r in rows[:3]] == pytest.approx([0.3, 0.9 * 0.8, 0.5])


def test_the_progress_bar_counts_the_records_there_are(tmp_path, capsys):
    """20 records under the default cap of 1000: the bar reads 6/6, never 6/1000."""
    run_analyses(Source(make_records()), tmp_path, analyses=("roles",), progress=True, total=6)
    err = capsys.readouterr().err
    assert "6/6" in err and "/1000" not in err, err
    run_analyses(Source(make_records()), tmp_path / "capped", analyses=("roles",), max_examples=4, progress=True,
                 total=6)
    err = capsys.readouterr().err
    assert "4/4" in err and "/6" not in err, err
    run_analyses(Source(make_records()), tmp_path / "unknown", analyses=("roles",), progress=True)
    assert "/1000" not in capsys.readouterr().err  # an unknown count is shown as a count, not as the cap


def test_the_examples_table_has_one_row_per_record_equal_to_the_record(tmp_path):
    records = make_records()
    run_analyses(Source(records), tmp_path, analyses=("flips",), model=make_tiny_qa_model("bert", layers=2),
                 nbest_probability={"q1": 0.25}, progress=False)
    table = read_json(tmp_path / "tables" / "examples.json")
    expected_columns = ["id", "question", "prediction", "gold", "em", "f1", "confidence",
                        *(f"completeness_gap/{n}" for n in LAYERS), *(f"flip/{n}" for n in LAYERS),
                        *(f"top_words/{n}" for n in LAYERS)]
    assert table["columns"] == expected_columns
    rows = table["rows"]
    assert [r["id"] for r in rows] == [r.example_id for r in records]
    for row, record in zip(rows, records):
        assert (row["question"], row["prediction"], row["gold"]) == (record.question, record.pred_text,
                                                                     record.gold_texts[0])
        right = record.pred_text == record.gold_texts[0]  # one-word answers: EM = F1 = 100 or 0
        assert row["em"] == row["f1"] == (100.0 if right else 0.0), row
        assert row["confidence"] == pytest.approx(0.25 if record.example_id == "q1" else 0.9 * 0.8)
        assert [row[f"completeness_gap/{n}"] for n in LAYERS] == list(record.delta)
        assert all(isinstance(row[f"flip/{n}"], bool) for n in LAYERS)
        # one token per whitespace word: the top words are the words in order of their stored importance
        words = record.context.split()
        passage = record.importance[:, record.passage_start:record.passage_end]  # [L, W]
        for n, scores in zip(LAYERS, passage):
            top = [words[i] for i in sorted(range(len(words)), key=lambda i: (-scores[i], i))[:5]]
            assert row[f"top_words/{n}"] == ", ".join(top)
    with open(tmp_path / "tables" / "examples.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == len(records)


def test_tensorboard_gets_layer_stepped_images_layer_series_and_tables(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = make_records()
    hidden = {"q4": np.random.default_rng(2).normal(size=(3, len(records[4].tokens), 8))}
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    run_analyses(Source(records), tmp_path / "analysis", analyses=("roles", "tsne"), hidden=hidden, tsne_examples=1,
                 logger=logger, progress=False)
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert [e.step for e in events.Images("analysis/tsne/q4")] == [0, 1, 2]  # one frame per layer
    assert "analysis/roles" in tags["images"]
    answer = [e.value for e in events.Scalars("analysis/roles/answer")]
    table = read_json(tmp_path / "analysis" / "tables" / "roles.json")["rows"]
    np.testing.assert_allclose(answer, [row["answer"] for row in table], rtol=1e-6)
    assert any(t.startswith("analysis/tables/examples") for t in tags["tensors"])  # tables as text
