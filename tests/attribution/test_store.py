"""The shard store: round trip through `write_shard`, dev order, duplicates, corruption, no pickle, manifests."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from lit_rcqa import process
from lit_rcqa.attribution import store
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.errors import UserError

LAYERS = ["embeddings", "layer_01", "layer_02"]
# What a shard says it was computed with: the manifest's keys that change the numbers (see manifest_for).
SETTINGS = {"model": {"fingerprint": "ab" * 32},
            "data": {"synthetic_dev_size": 12, "max_seq_length": 64, "doc_stride": 24, "max_query_length": 32},
            "postprocess": {"n_best": 20, "max_answer_length": 30, "version_2": False, "null_threshold": 0.0},
            "ig": {"layers": LAYERS, "steps": 4, "method": "gausslegendre", "target": "prob", "baseline": "zero",
                   "tolerance": None, "explain": "predicted"},
            "hidden": {"examples": 2, "dtype": "float16"}}


def manifest_for(settings: dict, num_examples: int = 6) -> dict:
    """A manifest as run.build_manifest writes it: the settings plus the keys that do not change any number."""
    manifest = copy.deepcopy(settings)
    manifest["schema"] = store.SCHEMA_VERSION
    manifest["model"]["path"] = "/somewhere/runs/tiny/model"
    manifest["data"]["num_examples"] = num_examples
    return manifest


def other(settings: dict, **ig) -> dict:
    changed = copy.deepcopy(settings)
    changed["ig"].update(ig)
    return changed


def write_manifest(out: Path, manifest: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / store.MANIFEST).write_text(json.dumps(manifest))


def make_result(position: int, T: int = 7, *, types: bool = True, hidden: bool = False,
                seed: int = 0) -> AttributionRecord:
    """A hand-made record, as the prediction loop returns it: '[CLS] q [SEP] p0 … [SEP]' with random scores."""
    rng = np.random.default_rng(seed + position)
    tokens = ["[CLS]", "q", "[SEP]", *[f"p{i}" for i in range(T - 4)], "[SEP]"]
    offsets = np.full((T, 2), -1, dtype=np.int64)
    offsets[3:T - 1] = [(3 * i, 3 * i + 2) for i in range(T - 4)]
    return AttributionRecord(
        position=position, example_id=f"ex-{position}", question="q ?", context="p0 p1 p2 p3 p4 p5 p6 p7 p8",
        tokens=tokens, offsets=offsets, passage_start=3, passage_end=T - 1, layers=LAYERS,
        importance=rng.random((3, T), dtype=np.float32), signed=rng.standard_normal((3, T)).astype(np.float32),
        delta=rng.random(3) * 1e-3, steps=np.array([50, 50, 50], dtype=np.int32), pred_start=3, pred_end=4,
        pred_text="p0 p1", start_prob=0.7, end_prob=0.6, target_value=1.3, nbest_probability=0.55 + position / 100,
        window=0, explained="predicted", gold_texts=("p1", "p0 p1"), evidence_span=(0, 5) if position % 2 else None,
        input_ids=rng.integers(1000, 2000, T).astype(np.int64),
        token_type_ids=(np.arange(T) >= 3).astype(np.int64) if types else None,
        hidden=rng.standard_normal((3, T, 4)).astype(np.float16) if hidden else None)


def write(out: Path, results, rank=0, batch_idx=0, settings=SETTINGS):
    store.write_shard(out, list(results), rank=rank, settings=settings, batch_idx=batch_idx)


def assert_same_fields(read: AttributionRecord, written: AttributionRecord) -> None:
    """Every field of the record as written, but `hidden` (read lazily: `store.load_hidden`)."""
    for f in dataclasses.fields(AttributionRecord):
        a, b = getattr(read, f.name), getattr(written, f.name)
        if f.name == "hidden":
            assert a is None, "records carry no hidden states when read"
        elif isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype, f.name
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:
            assert a == b and type(a) is type(b), (f.name, a, b)


def test_round_trip_keeps_every_field(tmp_path):
    results = [make_result(0, hidden=True), make_result(1, T=9, types=False), make_result(2, T=5)]
    results[2].converged = np.array([True, False, True])
    results[1].nbest_probability = results[1].target_value = results[1].window = results[1].explained = None
    write(tmp_path, results)
    records = store.load(tmp_path)
    assert list(records) == ["ex-0", "ex-1", "ex-2"]
    for r in results:
        assert_same_fields(records[r.example_id], r)
    assert records["ex-0"].nbest_probability == 0.55 and records["ex-2"].window == 0
    hidden = store.load_hidden(tmp_path)
    assert list(hidden) == ["ex-0"] and hidden["ex-0"].dtype == np.float16
    np.testing.assert_array_equal(hidden["ex-0"], results[0].hidden)
    assert store.finished_ids(tmp_path) == {"ex-0", "ex-1", "ex-2"}


def test_ranks_and_resumes_merge_in_dev_order_without_duplicates(tmp_path):
    # DDP: rank 0 holds even positions, rank 1 odd ones; a resumed run re-scored position 3 in a later shard.
    write(tmp_path, [make_result(0), make_result(2), make_result(4)], rank=0)
    write(tmp_path, [make_result(1), make_result(3)], rank=1)
    write(tmp_path, [make_result(3, seed=99), make_result(5)], rank=0, batch_idx=1)
    records = list(store.iter_records(tmp_path))
    assert [r.example_id for r in records] == [f"ex-{i}" for i in range(6)]
    np.testing.assert_array_equal(records[3].importance, make_result(3).importance)  # the first shard's copy


def test_records_stream_shard_by_shard(tmp_path, monkeypatch):
    for b in range(5):
        write(tmp_path, [make_result(2 * b), make_result(2 * b + 1)], batch_idx=b)
    loads = []
    original = store._load_tensors
    monkeypatch.setattr(store, "_load_tensors", lambda *a: loads.append(a[0]) or original(*a))
    stream = store.iter_records(tmp_path)
    next(stream)
    assert len(loads) == 1  # one shard read to yield the first record
    assert sum(1 for _ in stream) == 9 and len(loads) == 5


def test_a_shard_is_absent_until_its_sidecar_is_written(tmp_path, monkeypatch):
    original = process.write_bytes_atomic

    def crash_on_sidecar(path, data, **kwargs):
        if path.suffix == ".json":
            raise KeyboardInterrupt  # killed between the tensor file and the sidecar
        original(path, data, **kwargs)

    monkeypatch.setattr(process, "write_bytes_atomic", crash_on_sidecar)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, [make_result(0)])
    assert store.finished_ids(tmp_path) == set() and store.load(tmp_path) == {}


def shard_files(out: Path) -> tuple[Path, Path]:
    (sidecar,) = sorted((out / "scores").glob("*.json"))
    return sidecar, sidecar.with_suffix(".safetensors")


@pytest.mark.parametrize("damage", ["truncate_tensors", "flip_byte", "truncate_sidecar", "bad_schema"])
def test_a_corrupt_shard_is_one_clear_error_naming_the_file(tmp_path, damage):
    write(tmp_path, [make_result(0), make_result(1)])
    sidecar, tensors = shard_files(tmp_path)
    if damage == "truncate_tensors":
        tensors.write_bytes(tensors.read_bytes()[:-10])
    elif damage == "flip_byte":
        data = bytearray(tensors.read_bytes())
        data[-1] ^= 0xFF
        tensors.write_bytes(bytes(data))
    elif damage == "truncate_sidecar":
        sidecar.write_bytes(sidecar.read_bytes()[:50])
    else:
        meta = json.loads(sidecar.read_text())
        meta["schema"] = 99
        sidecar.write_text(json.dumps(meta))
    with pytest.raises(UserError) as err:
        store.load(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "corrupt IG shard" in message
    assert (tensors.name if damage in ("truncate_tensors", "flip_byte") else sidecar.name) in message


class _Trap:
    """Unpickling this would create a file: proof that nothing was unpickled."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (Path.touch, (self.flag,))


def test_pickle_content_is_refused_and_never_unpickled(tmp_path):
    write(tmp_path, [make_result(0)])
    sidecar, tensors = shard_files(tmp_path)
    flag = tmp_path / "unpickled"
    payload = pickle.dumps({"0.importance": _Trap(flag)})
    tensors.write_bytes(payload)
    meta = json.loads(sidecar.read_text())  # a matching checksum: only the format check can refuse it
    meta["tensors"]["scores"].update(bytes=len(payload), sha256=store.sha256_bytes(payload))
    sidecar.write_bytes(store.encode_sidecar(meta))
    with pytest.raises(UserError, match="not a safetensors file"):
        store.load(tmp_path)
    # A pickled sidecar, and pickle/npy files beside the shards, are refused or ignored, never loaded.
    (tmp_path / "scores" / "00000009-r00.json").write_bytes(pickle.dumps(_Trap(flag)))
    (tmp_path / "scores" / "extra.pkl").write_bytes(pickle.dumps(_Trap(flag)))
    with pytest.raises(UserError, match="00000009-r00.json"):
        store.finished_ids(tmp_path)
    os.remove(tmp_path / "scores" / "00000009-r00.json")
    with pytest.raises(UserError):
        store.load(tmp_path)
    assert not flag.exists()


def test_wrong_array_shape_or_type_is_corruption(tmp_path):
    from safetensors.numpy import load, save

    write(tmp_path, [make_result(0)])
    sidecar, tensors = shard_files(tmp_path)
    arrays = load(tensors.read_bytes())
    arrays["0.importance"] = arrays["0.importance"].astype(np.float64)
    data = save(arrays)
    tensors.write_bytes(data)
    meta = json.loads(sidecar.read_text())
    meta["tensors"]["scores"].update(bytes=len(data), sha256=store.sha256_bytes(data))
    sidecar.write_bytes(store.encode_sidecar(meta))
    with pytest.raises(UserError, match="0.importance"):
        store.load(tmp_path)


def test_manifest_conflicts_name_the_differing_keys(tmp_path):
    old = {"schema": 1, "ig": {"steps": 50, "method": "gausslegendre", "layers": ["embeddings"]},
           "data": {"num_examples": 10}}
    new = {"schema": 1, "ig": {"steps": 20, "method": "gausslegendre", "layers": ["embeddings", "layer_01"]},
           "data": {"num_examples": 10}, "hidden": {"examples": 3}}
    assert store.manifest_conflicts(old, new) == ["hidden", "ig.layers", "ig.steps"]
    assert store.manifest_conflicts(old, old) == []
    assert store.read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(UserError, match="manifest"):
        store.read_manifest(tmp_path)


# --- settings carried by every shard ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from lit_rcqa.attribution.run import open_run
    from tests.tiny_run import make_tiny_run

    return open_run(make_tiny_run(tmp_path_factory.mktemp("settings") / "tiny"))


def built_settings(run, ig=None, options=None, layers=(0, 1, 2), num_examples=6) -> dict:
    """What shards of this run would carry: `settings_of` the manifest run.build_manifest builds."""
    from lit_rcqa.attribution.integrated_gradients import IGSettings
    from lit_rcqa.attribution.run import IGOptions, build_manifest

    dm = run.data_module(num_examples)
    dm.setup("validate")
    manifest = build_manifest(run, dm, dm.eval_split(), list(layers), ig or IGSettings(steps=4),
                              options or IGOptions(num_examples=num_examples))
    return store.settings_of(manifest)


def with_config(run, section: str, **changes):
    """The same model in a run folder whose config.yaml has other settings (as another training run would have),
    opened as analyze.py opens it."""
    import yaml

    from lit_rcqa.attribution.run import open_run

    folder = run.run_dir.parent / f"{run.run_dir.name}-{section}-{'-'.join(f'{k}={v}' for k, v in changes.items())}"
    if not folder.exists():
        folder.mkdir()
        (folder / "model").symlink_to(run.model_dir.resolve())  # the same files: the same fingerprint
        (folder / "run.json").write_bytes((run.run_dir / "run.json").read_bytes())
        config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
        config[section] = {**config[section], **changes}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return open_run(folder)


def with_model_file(run, tmp_path: Path, name: str, change) -> object:
    """A copy of the run whose model/<name> was changed by `change(path)`."""
    import shutil

    from lit_rcqa.attribution.run import open_run

    copy_dir = tmp_path / f"changed-{name}"
    shutil.copytree(run.run_dir, copy_dir)
    change(copy_dir / "model" / name)
    return open_run(copy_dir)


def _perturb_weights(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    key = sorted(weights)[0]
    weights[key] = weights[key] + 1e-3
    save_file(weights, str(path), metadata={"format": "pt"})


def _edit_json(key, value):
    def change(path: Path) -> None:
        document = json.loads(path.read_text())
        document[key] = value
        path.write_text(json.dumps(document))
    return change


def _swap_two_vocab_ids(path: Path) -> None:
    """tokenizer.json with two word pieces' ids exchanged: the same text becomes other input ids."""
    document = json.loads(path.read_text(encoding="utf-8"))
    vocab = document["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[1000:1002]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def test_the_settings_of_a_manifest_are_everything_that_changes_the_numbers(tiny_run, tmp_path):
    """The real manifest builder: every option that changes an example's numbers changes the settings (naming
    that key), and what changes none leaves them as they are."""
    from lit_rcqa.attribution.integrated_gradients import IGSettings
    from lit_rcqa.attribution.run import IGOptions

    base = built_settings(tiny_run)
    tol = IGSettings(tolerance=1e-3)
    variants = {
        "ig.steps": built_settings(tiny_run, IGSettings(steps=8)),
        "ig.method": built_settings(tiny_run, IGSettings(steps=4, method="riemann_left")),
        "ig.target": built_settings(tiny_run, IGSettings(steps=4, target="logit")),
        "ig.tolerance": built_settings(tiny_run, IGSettings(steps=4, tolerance=1e-3)),
        "ig.max_answer_length": built_settings(tiny_run, IGSettings(steps=4, max_answer_length=5)),
        "ig.baseline": built_settings(tiny_run, options=IGOptions(num_examples=6, baseline="mean")),
        "ig.explain": built_settings(tiny_run, options=IGOptions(num_examples=6, explain="gold")),
        "ig.layers": built_settings(tiny_run, layers=(0, 2)),
        "hidden.examples": built_settings(tiny_run, options=IGOptions(num_examples=6, hidden_examples=3)),
        "hidden.dtype": built_settings(tiny_run, options=IGOptions(num_examples=6, hidden_dtype="float32")),
        "postprocess.n_best": built_settings(with_config(tiny_run, "model", n_best=5)),
        "postprocess.max_answer_length": built_settings(with_config(tiny_run, "model", max_answer_length=4)),
        "postprocess.null_threshold": built_settings(with_config(tiny_run, "model", null_threshold=1.5)),
        "postprocess.version_2": built_settings(with_config(tiny_run, "model", version_2_with_negative=True)),
        "data.max_seq_length": built_settings(with_config(tiny_run, "data", max_seq_length=48)),
        "data.doc_stride": built_settings(with_config(tiny_run, "data", doc_stride=16)),
        "data.max_query_length": built_settings(with_config(tiny_run, "data", max_query_length=16)),
        "data.synthetic_seed": built_settings(with_config(tiny_run, "data", synthetic_seed=1)),
    }
    # Model files: the weights, the architecture's config, the tokenizer (other ids, other windows).
    for name, change in (("model.safetensors", _perturb_weights), ("config.json", _edit_json("layer_norm_eps", 1e-5)),
                         ("tokenizer.json", _swap_two_vocab_ids),
                         ("tokenizer_config.json", _edit_json("model_max_length", 128))):
        variants[f"model.fingerprint ({name})"] = built_settings(with_model_file(tiny_run, tmp_path, name, change))
    # a tolerance turns the adaptive panels on, and with them their settings
    panel_keys = ["ig.breakpoints", "ig.criterion", "ig.panel_points", "ig.refine_fraction", "ig.split"]
    also = {"ig.tolerance": panel_keys}
    for key, changed in variants.items():
        name = key.split(" ")[0]
        assert store.manifest_conflicts(base, changed) == sorted([name, *also.get(name, [])]), key
    # Under a tolerance, the refinement schedule's own settings.
    for key, ig in (("ig.max_steps", IGSettings(tolerance=1e-3, max_steps=99)),
                    ("ig.min_steps", IGSettings(tolerance=1e-3, min_steps=3)),
                    ("ig.split", IGSettings(tolerance=1e-3, split="nodes")),
                    ("ig.refine_fraction", IGSettings(tolerance=1e-3, refine_fraction=0.5)),
                    ("ig.panel_points", IGSettings(tolerance=1e-3, panel_points=5)),
                    ("ig.breakpoints", IGSettings(tolerance=1e-3, breakpoints=(0.0, 0.5, 1.0))),
                    ("ig.criterion", IGSettings(tolerance=1e-3, criterion="total")),
                    ("ig.refine_method", IGSettings(tolerance=1e-3, refine_method="romberg"))):
        expected = sorted([key, *panel_keys]) if key == "ig.refine_method" else [key]
        assert store.manifest_conflicts(built_settings(tiny_run, tol), built_settings(tiny_run, ig)) == expected
    # What changes no example's numbers: how many questions were asked for, where the run folder lies, and
    # how and where the same computation runs (chunk size, device, DDP ranks and batches: whole examples per
    # rank; the scores differ at rounding level only, see run.build_manifest).
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(tiny_run.run_dir, moved)
    from lit_rcqa.attribution.run import open_run

    assert built_settings(tiny_run, num_examples=3) == base
    assert built_settings(open_run(moved)) == base
    assert built_settings(tiny_run, IGSettings(steps=4, max_batch_tokens=64)) == base
    assert built_settings(tiny_run, options=IGOptions(num_examples=6, accelerator="gpu", devices=2,
                                                      strategy="ddp", batch_size=1)) == base


def test_shards_written_with_other_settings_than_the_manifest_are_refused_naming_them(tmp_path):
    write(tmp_path, [make_result(0, hidden=True), make_result(1)])
    write_manifest(tmp_path, manifest_for(SETTINGS))
    assert list(store.load(tmp_path)) == ["ex-0", "ex-1"]
    # The manifest now claims m = 8, a left Riemann sum: the shards were computed at m = 4 Gauss-Legendre.
    write_manifest(tmp_path, manifest_for(other(SETTINGS, steps=8, method="riemann_left")))
    for read in (store.load, store.finished_ids, store.load_hidden):
        with pytest.raises(UserError) as err:
            read(tmp_path)
        message = str(err.value)
        assert "\n" not in message and str(tmp_path) in message and "(ig.method, ig.steps)" in message, message


def test_without_a_manifest_the_shards_must_agree_with_each_other(tmp_path):
    write(tmp_path, [make_result(0)])
    write(tmp_path, [make_result(1)], batch_idx=1, settings=other(SETTINGS, baseline="mean"))
    with pytest.raises(UserError, match=r"\(ig\.baseline\)"):
        store.load(tmp_path)


@pytest.mark.parametrize("edit", ["example_id", "pred_text", "settings", "drop_checksum"])
def test_an_edited_sidecar_is_a_corrupt_shard(tmp_path, edit):
    write(tmp_path, [make_result(0), make_result(1)])
    sidecar, _ = shard_files(tmp_path)
    meta = json.loads(sidecar.read_text())
    if edit == "example_id":
        meta["examples"][0]["id"] = "someone-else"
    elif edit == "pred_text":
        meta["examples"][1]["pred_text"] = "a better answer"
    elif edit == "settings":
        meta["settings"]["ig"]["steps"] = 50
    else:
        del meta["sha256"]
    sidecar.write_text(json.dumps(meta))  # valid JSON, every key present: only a checksum can tell
    for read in (store.load, store.finished_ids):
        with pytest.raises(UserError) as err:
            read(tmp_path)
        message = str(err.value)
        assert "\n" not in message and "corrupt IG shard" in message and sidecar.name in message, message


def test_the_writer_never_replaces_a_committed_shard(tmp_path):
    write(tmp_path, [make_result(0), make_result(1)])
    before = {p.name: p.read_bytes() for p in (tmp_path / "scores").iterdir()}
    # A second batch starting at the same position on the same rank (a resume after a damaged or hand-edited
    # shard): its results go to a new shard, and the one holding example 1 stays as it was.
    write(tmp_path, [make_result(0, seed=99)])
    after = {p.name: p.read_bytes() for p in (tmp_path / "scores").iterdir()}
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 2
    records = store.load(tmp_path)
    assert list(records) == ["ex-0", "ex-1"]
    np.testing.assert_array_equal(records["ex-0"].importance, make_result(0).importance)  # the first copy


def make_legacy(out: Path) -> None:
    """Rewrite every shard as schema 1 (the format before settings and sidecar checksums; without the fields
    records gained later, which read as their defaults)."""
    for sidecar in (out / "scores").glob("*.json"):
        meta = json.loads(sidecar.read_text())
        for key in ("sha256", "settings"):
            meta.pop(key)
        for example in meta["examples"]:
            for key in ("nbest_probability", "target_value", "window", "explained"):
                example.pop(key)
        meta["schema"] = 1
        sidecar.write_text(json.dumps(meta))


def test_schema_1_shards_load_only_under_the_schema_1_manifest_written_with_them(tmp_path):
    write(tmp_path, [make_result(0), make_result(1)])
    expected = store.load(tmp_path)
    make_legacy(tmp_path)
    write_manifest(tmp_path, {**manifest_for(SETTINGS), "schema": 1})
    records = store.load(tmp_path)
    assert list(records) == list(expected)
    np.testing.assert_array_equal(records["ex-1"].signed, expected["ex-1"].signed)
    assert (records["ex-1"].nbest_probability, records["ex-1"].window) == (None, None)  # unknown, not made up
    # A manifest written later (by this version, e.g. after the old one was deleted) cannot vouch for them.
    for manifest in (None, manifest_for(SETTINGS)):
        (tmp_path / store.MANIFEST).unlink(missing_ok=True)
        if manifest is not None:
            write_manifest(tmp_path, manifest)
        with pytest.raises(UserError) as err:
            store.load(tmp_path)
        message = str(err.value)
        assert "\n" not in message and "older version" in message and str(tmp_path) in message, message


# --- two writers in one folder: a committed file is never replaced ----------------------------------------
class _Paused(Exception):
    """Raised instead of committing a sidecar: the writer is paused between its tensor files and its sidecar."""


def test_interleaved_writers_never_spoil_a_committed_shard(tmp_path, monkeypatch):
    """A's tensors, B's tensors, A's sidecar, B's sidecar, both for the same first position and rank: each
    sidecar must commit the tensor files it checksummed (never the other writer's under the same name)."""
    original = process.write_bytes_atomic
    paused = []

    def pause_before_the_sidecar(path, data, **kwargs):
        if path.suffix == ".json":
            paused.append((path, data, kwargs))
            raise _Paused
        original(path, data, **kwargs)

    monkeypatch.setattr(process, "write_bytes_atomic", pause_before_the_sidecar)
    a, b = [make_result(0, hidden=True), make_result(1)], [make_result(0, hidden=True, seed=7)]
    for results in (a, b):
        with pytest.raises(_Paused):
            write(tmp_path, results)
    monkeypatch.setattr(process, "write_bytes_atomic", original)
    for path, data, kwargs in paused:  # A's sidecar, then B's
        original(path, data, **kwargs)
    records = store.load(tmp_path)  # every checksum matches: no sidecar names the other writer's tensors
    assert list(records) == ["ex-0", "ex-1"]
    np.testing.assert_array_equal(records["ex-0"].importance, a[0].importance)
    assert len(list((tmp_path / "scores").glob("*.json"))) == 2
    np.testing.assert_array_equal(store.load_hidden(tmp_path)["ex-0"], a[0].hidden)


@pytest.mark.parametrize("taken", [".safetensors", ".hidden.safetensors"])
def test_a_tensor_file_that_appears_while_it_is_written_is_not_replaced(tmp_path, monkeypatch, taken):
    # Another writer committed a tensor file of that name between our name check and our commit.
    monkeypatch.setattr(store, "free_shard_name", lambda folder, position, rank: store.shard_name(position, rank))
    (tmp_path / "scores").mkdir()
    theirs = tmp_path / "scores" / f"00000000-r00{taken}"
    theirs.write_bytes(b"theirs")
    with pytest.raises(UserError, match="another process"):
        write(tmp_path, [make_result(0, hidden=True)])
    assert theirs.read_bytes() == b"theirs"
    assert not list((tmp_path / "scores").glob("*.json"))  # nothing committed over or beside it


def test_leftover_tensor_files_of_a_killed_writer_are_not_reused(tmp_path):
    # A writer killed between its tensor files and its sidecar: a later batch of the same name writes elsewhere.
    (tmp_path / "scores").mkdir()
    left = tmp_path / "scores" / "00000000-r00.safetensors"
    left.write_bytes(b"left by a killed writer")
    write(tmp_path, [make_result(0)])
    assert left.read_bytes() == b"left by a killed writer"
    assert list(store.load(tmp_path)) == ["ex-0"]


@pytest.mark.parametrize("error", [PermissionError, OSError])
def test_without_hard_links_a_committed_file_is_still_never_replaced(tmp_path, monkeypatch, error):
    """File systems without hard links (os.link fails: EPERM on FAT, EOPNOTSUPP elsewhere): the rename fallback
    still never puts a file over an existing one, and leaves no temp file."""
    def no_links(src, dst, *args, **kwargs):
        raise error(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "00000000-r00.json"
    path.write_bytes(b"theirs")
    with pytest.raises(UserError, match="another process"):
        process.write_bytes_atomic(path, b"ours", replace=False)
    assert path.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # A free name is committed by the rename, and whole shards round-trip.
    fresh = tmp_path / "fresh.json"
    process.write_bytes_atomic(fresh, b"ours", replace=False)
    assert fresh.read_bytes() == b"ours"
    out = tmp_path / "out"
    write(out, [make_result(0, hidden=True)])
    write(out, [make_result(0, seed=5)])  # same name taken: goes to -1, nothing replaced
    assert list(store.load(out)) == ["ex-0"] and len(list((out / "scores").glob("*.json"))) == 2
    assert not [p for p in (out / "scores").iterdir() if p.name.startswith(".")]


def test_a_temp_file_removed_under_the_writer_is_one_clear_error(tmp_path, monkeypatch):
    """Someone else's cleanup deleted our temp file before its commit: one UserError, not a raw
    FileNotFoundError, and nothing committed."""
    real_fsync = os.fsync

    def fsync_then_lose_the_file(fd):
        real_fsync(fd)
        for path in (tmp_path / "scores").glob(".*"):
            path.unlink()

    monkeypatch.setattr(process.os, "fsync", fsync_then_lose_the_file)
    with pytest.raises(UserError, match="was removed before it could be committed"):
        write(tmp_path, [make_result(0)])
    assert list((tmp_path / "scores").iterdir()) == []


def test_a_shard_of_the_previous_schema_is_read_with_every_field_it_holds(tmp_path):
    """Schema 2 shards (sidecars with their own checksum) hold the n-best probability, the window and F(h)
    too: read back, not dropped. tests/test_golden.py reads a real schema-2 folder."""
    results = [make_result(0), make_result(1)]
    write(tmp_path, results)
    (sidecar,) = (tmp_path / "scores").glob("*.json")
    meta = json.loads(sidecar.read_text())
    assert meta["schema"] == store.SCHEMA_VERSION == 3
    meta["schema"] = 2
    sidecar.write_bytes(store.encode_sidecar(meta))
    write_manifest(tmp_path, {**manifest_for(SETTINGS), "schema": 2})
    for r in results:
        assert_same_fields(store.load(tmp_path)[r.example_id], r)


def test_a_record_whose_arrays_do_not_fit_is_refused_before_anything_is_written(tmp_path):
    bad = make_result(0)
    bad.importance = bad.importance[:, :-1]  # one token short
    with pytest.raises(ValueError):
        write(tmp_path, [make_result(1), bad])
    no_ids = dataclasses.replace(make_result(0), input_ids=None)
    with pytest.raises(ValueError, match="input_ids"):
        write(tmp_path, [no_ids])
    assert not (tmp_path / "scores").exists()
