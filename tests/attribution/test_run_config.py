"""A training run's settings as analyze.py sees them: rebuilt from its config.yaml by train.py's own parser, and the
run's post-processing (max_answer_length) deciding IG's explained span."""

from __future__ import annotations

import json

import pytest
import yaml

from lit_rcqa.attribution.run import open_run
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.postprocess import PostprocessSettings
from tests.tiny_run import make_tiny_run


def edit_config(run_dir, **sections):
    """config.yaml with `sections` ({"model": {...}, "data": {...}}) merged in, as another training run wrote it."""
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for section, changes in sections.items():
        config[section] = {**config[section], **changes}
    path.write_text(yaml.safe_dump(config))
    return run_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("run") / "tiny")


def test_the_runs_data_and_postprocessing_come_from_its_config_yaml(tiny, tmp_path):
    import shutil

    shutil.copytree(tiny, tmp_path / "run")
    run = open_run(edit_config(tmp_path / "run", model={"max_answer_length": 12, "n_best": 7},
                               data={"doc_stride": 16, "max_eval_examples": 5}))
    assert run.postprocess == PostprocessSettings(n_best=7, max_answer_length=12, version_2=False, null_threshold=0.0)
    hp = run.data_module(3).hparams
    assert (hp.doc_stride, hp.max_seq_length, hp.synthetic_dev_size, hp.max_eval_examples) == (16, 64, 12, 3)
    assert hp.tokenizer_name == str(run.model_dir) and hp.num_workers == 0  # the saved tokenizer, no workers
    assert run.data_module(None).hparams.max_eval_examples == 5  # the run's own cap when fewer are asked
    assert run.data_module(10).hparams.max_eval_examples == 5


@pytest.mark.parametrize("edit, key", [
    ({"model": {"max_answer_length": "many"}}, "max_answer_length"),
    ({"data": {"doc_stride": -3}}, "doc_stride"),
    ({"data": {"no_such_key": 1}}, "no_such_key"),
])
def test_a_bad_config_yaml_is_one_line_naming_the_file_and_the_key(tiny, tmp_path, edit, key):
    import shutil

    shutil.copytree(tiny, tmp_path / "run")
    with pytest.raises(UserError) as err:
        open_run(edit_config(tmp_path / "run", **edit))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "run" / "config.yaml") in message and key in message, message


def test_an_unreadable_config_yaml_is_one_line_naming_the_file(tiny, tmp_path):
    import shutil

    shutil.copytree(tiny, tmp_path / "run")
    (tmp_path / "run" / "config.yaml").write_text("data: [unclosed\n")
    with pytest.raises(UserError) as err:
        open_run(tmp_path / "run")
    assert "\n" not in str(err.value) and "config.yaml" in str(err.value), str(err.value)


def test_ig_explains_spans_no_longer_than_the_runs_max_answer_length(tiny, tmp_path):
    """A run trained with max_answer_length 12: IG (its own best span included) works under 12, not 30."""
    import shutil

    from callbacks import ig_callbacks
    from lit_rcqa.attribution import store
    from lit_rcqa.attribution.integrated_gradients import IGSettings
    from lit_rcqa.attribution.run import IGOptions, run_ig

    shutil.copytree(tiny, tmp_path / "run")
    run = open_run(edit_config(tmp_path / "run", model={"max_answer_length": 12}))
    out = tmp_path / "out"
    run_ig(run, out, IGSettings(steps=2), IGOptions(layers="0", num_examples=3, hidden_examples=0, progress=False),
           callbacks=ig_callbacks)
    manifest = json.loads((out / store.MANIFEST).read_text())
    assert manifest["postprocess"]["max_answer_length"] == 12 and manifest["ig"]["max_answer_length"] == 12
    records = list(store.iter_records(out))
    assert len(records) == 3 and all(r.pred_end - r.pred_start < 12 for r in records)
