"""The IG prediction loop end to end in-process: stored scores equal a direct `integrated_gradients` call on
the window the run's post-processing picks; hidden states; files on disk; resume skips finished examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from callbacks import ig_callbacks
from lit_rcqa.attribution import store
from lit_rcqa.attribution.integrated_gradients import IGSettings, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter
from lit_rcqa.attribution.run import IGOptions, load_model, open_run, run_ig
from lit_rcqa.data.features import FeatureConfig, build_features
from lit_rcqa.data.synthetic import make_synthetic_splits
from lit_rcqa.evaluation.postprocess import postprocess_predictions
from tests.tiny_run import DATA, make_tiny_run

N, HIDDEN = 6, 3
SETTINGS = IGSettings(steps=20)


THREADS = {}  # torch's thread count before the module's fixture ran


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    THREADS["before"] = torch.get_num_threads()
    run = open_run(make_tiny_run(tmp_path_factory.mktemp("run") / "tiny"))
    out = run.run_dir / "analysis"
    torch.set_num_threads(1)  # one thread for the scoring only; restored for every other test of the session
    try:
        info = run_ig(run, out, SETTINGS, IGOptions(num_examples=N, hidden_examples=HIDDEN, batch_size=4,
                                                     progress=False), callbacks=ig_callbacks)
    finally:
        torch.set_num_threads(THREADS["before"])
    return run, out, info


def test_the_fixture_leaves_torch_threads_as_it_found_them(scored):
    # A session-wide change would slow down (and change the float summation order of) every later test.
    assert torch.get_num_threads() == THREADS["before"]


def reference_windows(run):
    """Independently: the dev examples, their windows and the run's post-processing over all windows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run.model_dir))
    _, dev = make_synthetic_splits(DATA["synthetic_train_size"], DATA["synthetic_dev_size"],
                                   seed=DATA["synthetic_seed"])
    dev = dev[:N]
    features = build_features(dev, tokenizer, FeatureConfig(DATA["max_seq_length"], DATA["doc_stride"],
                                                            DATA["max_query_length"]), training=False)
    model = load_model(run)
    starts, ends = [], []
    with torch.no_grad():
        for f, ids in enumerate(features.input_ids):
            out = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([features.token_type_ids[f]]))
            starts.append(out.start_logits[0].numpy())
            ends.append(out.end_logits[0].numpy())
    predictions, nbest = postprocess_predictions(dev, features, starts, ends, n_best=20, max_answer_length=30)
    return tokenizer, dev, features, model, predictions, nbest


def test_stored_scores_equal_a_direct_call_on_the_predicted_answers_window(scored):
    run, out, info = scored
    assert info.n_examples == N == info.n_computed and info.is_global_zero
    tokenizer, dev, features, model, predictions, nbest = reference_windows(run)
    records = store.load(out)
    assert list(records) == [ex.id for ex in dev]  # dev order
    windows = {e: [f for f, x in enumerate(features.example_index) if x == e] for e in range(N)}
    # The choice of window is really exercised: several windows per example, answers outside the first.
    assert max(len(w) for w in windows.values()) > 1 and \
        any(nbest[ex.id][0].feature_index != windows[e][0] for e, ex in enumerate(dev))
    for e, ex in enumerate(dev):
        rec, best = records[ex.id], nbest[ex.id][0]
        f = best.feature_index
        ids = torch.tensor(features.input_ids[f])
        types = torch.tensor(features.token_type_ids[f])
        assert rec.tokens == tokenizer.convert_ids_to_tokens(features.input_ids[f])
        assert (rec.pred_start, rec.pred_end) == (best.start_token, best.end_token)
        answer = ex.context[rec.offsets[rec.pred_start][0]:rec.offsets[rec.pred_end][1]]
        assert rec.pred_text == predictions[ex.id] == answer
        direct = integrated_gradients(model, ids, token_type_ids=types, layers="all",
                                      span=(best.start_token, best.end_token), settings=SETTINGS)
        assert rec.layers == ["embeddings", "layer_01", "layer_02"]
        for name in ("importance", "signed", "delta", "steps"):
            np.testing.assert_allclose(getattr(rec, name), getattr(direct, name), rtol=1e-5, atol=1e-7,
                                       err_msg=f"{ex.id} {name}")
        assert rec.start_prob == pytest.approx(direct.start_prob) and rec.end_prob == pytest.approx(direct.end_prob)
        assert rec.target_value == pytest.approx(direct.target_value)
        # What the record carries from the window choice: that answer's n-best probability and its window.
        assert rec.nbest_probability == pytest.approx(best.probability)
        assert (rec.window, rec.explained, rec.position) == (windows[e].index(f), "predicted", e)
        assert rec.gold_texts == tuple(a.text for a in ex.answers) and rec.evidence_span == ex.evidence_span
        np.testing.assert_array_equal(rec.input_ids, features.input_ids[f])
        # The passage range and offsets are the window's context tokens.
        context = [i for i, o in enumerate(features.offsets[f]) if o is not None]
        assert (rec.passage_start, rec.passage_end) == (context[0], context[-1] + 1)
        assert rec.tokens[rec.passage_start - 1] == "[SEP]" and rec.tokens[rec.passage_end] == "[SEP]"


def test_hidden_states_of_the_first_examples(scored):
    run, out, _ = scored
    hidden = store.load_hidden(out)
    records = store.load(out)
    first = list(records)[:HIDDEN]
    assert list(hidden) == first
    adapter = EncoderAdapter(load_model(run))
    for ex_id in first:
        rec = records[ex_id]
        states = adapter.hidden_states(torch.tensor(rec.input_ids)[None], None,
                                       torch.tensor(rec.token_type_ids)[None])
        expected = torch.stack([s[0] for s in states]).detach().numpy()  # [3, T, 32]
        assert hidden[ex_id].shape == expected.shape and hidden[ex_id].dtype == np.float16
        np.testing.assert_allclose(hidden[ex_id].astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_files_on_disk_are_shards_and_a_manifest(scored):
    run, out, _ = scored
    names = sorted(p.name for p in (out / "scores").iterdir())
    assert names == ["00000000-r00.hidden.safetensors", "00000000-r00.json", "00000000-r00.safetensors",
                     "00000004-r00.json", "00000004-r00.safetensors"]  # batch of 4, then 2; hidden only for 0-2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == store.SCHEMA_VERSION
    assert manifest["ig"]["layers"] == ["embeddings", "layer_01", "layer_02"] and manifest["ig"]["steps"] == 20
    assert manifest["data"]["num_examples"] == N and manifest["data"]["synthetic_dev_size"] == 12
    assert len(manifest["model"]["fingerprint"]) == 64


def test_a_second_run_computes_nothing_and_more_examples_are_refused(scored):
    from lit_rcqa.errors import UserError

    run, out, _ = scored
    before = {p.name: p.stat().st_mtime_ns for p in (out / "scores").iterdir()}
    again = run_ig(run, out, SETTINGS, IGOptions(num_examples=N, hidden_examples=HIDDEN, progress=False),
                   callbacks=ig_callbacks)
    assert again.n_computed == 0 and again.n_examples == N
    assert {p.name: p.stat().st_mtime_ns for p in (out / "scores").iterdir()} == before
    with pytest.raises(UserError, match="data.num_examples"):
        run_ig(run, out, SETTINGS, IGOptions(num_examples=N + 1, hidden_examples=HIDDEN, progress=False),
               callbacks=ig_callbacks)


def test_gold_spans_and_the_mean_baseline(scored, tmp_path):
    from lit_rcqa.attribution.system import mean_baseline

    run, _, _ = scored
    out = tmp_path / "gold"
    run_ig(run, out, SETTINGS, IGOptions(num_examples=3, explain="gold", baseline="mean", hidden_examples=0,
                                         progress=False), callbacks=ig_callbacks)
    model = load_model(run)
    records = store.load(out)
    assert len(records) == 3 and store.load_hidden(out) == {}
    for rec in records.values():
        gold = rec.gold_texts[0]
        assert rec.pred_text == gold  # synthetic answers are whole words: the span is exactly the gold text
        direct = integrated_gradients(model, torch.tensor(rec.input_ids),
                                      token_type_ids=torch.tensor(rec.token_type_ids),
                                      span=(rec.pred_start, rec.pred_end), baseline=mean_baseline, settings=SETTINGS)
        np.testing.assert_allclose(rec.importance, direct.importance, rtol=1e-5, atol=1e-7)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["ig"]["explain"], manifest["ig"]["baseline"]) == ("gold", "mean")


def test_without_callbacks_run_ig_says_what_it_needs_and_writes_nothing(scored, tmp_path):
    run, _, _ = scored
    with pytest.raises(TypeError, match="callbacks"):
        run_ig(run, tmp_path / "none", SETTINGS, IGOptions(num_examples=2, progress=False))
    assert not (tmp_path / "none").exists()


def test_the_writer_callback_writes_its_batch_through_the_store(tmp_path):
    """IGShardWriter only hands each batch's records, with its trainer's rank, to `store.write_shard`."""
    from types import SimpleNamespace

    from callbacks.ig_writer import IGShardWriter
    from tests.attribution.test_store import SETTINGS as SHARD_SETTINGS, assert_same_fields, make_result

    records = [make_result(3, hidden=True), make_result(5)]
    writer = IGShardWriter(tmp_path, SHARD_SETTINGS)
    writer.write_on_batch_end(SimpleNamespace(global_rank=1), None, records, None, None, 7)
    writer.write_on_batch_end(SimpleNamespace(global_rank=1), None, [], None, None, 8)  # an empty batch: nothing
    (sidecar,) = (tmp_path / "scores").glob("*.json")
    meta = json.loads(sidecar.read_text())
    assert sidecar.name == "00000003-r01.json" and (meta["rank"], meta["batch_idx"]) == (1, 7)
    assert meta["settings"] == SHARD_SETTINGS
    read = store.load(tmp_path)
    for r in records:
        assert_same_fields(read[r.example_id], r)
