"""Every shipped config in configs/ parses and starts a 2-step run (tiny model, data from the committed
SQuAD extracts, DuoRC built from them in DuoRC's own format); and the suite's ddp tests are all slow,
as the README says.

The runs happen in a scratch tree laid out like a user's: `work/` is the working folder, so the
configs' own `../shared/data/...` paths resolve to `shared/data/`, and $SQUAD_DIR / $DUORC_DIR point
at folders holding files under the names the configs expect.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lit_rcqa.cli import main as train_main
from lit_rcqa.paths import REPO_ROOT
from tests import conftest
from tests.conftest import SQUAD_V1_EXTRACT, SQUAD_V2_EXTRACT

CONFIGS = REPO_ROOT / "configs"
# configs/analyze.yaml is analyze.py's (tests/test_analyze_config.py checks it); every other config is train.py's.
ANALYZE_CONFIGS = ["analyze.yaml"]
SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name not in ANALYZE_CONFIGS)

# How each config is meant to be used (its header says so): paper_bert_base is layered over a data config.
LAYERS = {"paper_bert_base.yaml": ["squad_v1.yaml", "paper_bert_base.yaml"]}
EVAL_EXAMPLES = 6


def test_the_shipped_configs_are_the_ones_checked_here():
    """A new config must be added to these checks (and to the data tree below if it reads files)."""
    assert SHIPPED == ["default.yaml", "duorc_selfrc.yaml", "paper_bert_base.yaml", "squad_cpu.yaml",
                       "squad_gpu.yaml", "squad_v1.yaml", "squad_v2.yaml"]
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(SHIPPED + ANALYZE_CONFIGS)
    assert all((CONFIGS / name).is_file() for name in ANALYZE_CONFIGS)


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"data.batch_size": 32, ...}: every scalar of a nested mapping under its dotted key."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def expected_settings(name: str) -> dict[str, object]:
    """What the config should resolve to: default.yaml, then each layer in order (later wins)."""
    settings = leaves(yaml.safe_load((CONFIGS / "default.yaml").read_text(encoding="utf-8")))
    for layer in LAYERS.get(name, [name]):
        settings.update(leaves(yaml.safe_load((CONFIGS / layer).read_text(encoding="utf-8"))))
    return settings


def config_args(name: str) -> list[str]:
    return [arg for layer in LAYERS.get(name, [name]) for arg in ("--config", str(CONFIGS / layer))]


# --- parsing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHIPPED)
def test_config_parses_and_print_config_shows_its_settings(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main([*config_args(name), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = leaves(yaml.safe_load(capsys.readouterr().out))
    expected = expected_settings(name)
    assert {k: printed.get(k, "<absent>") for k in expected} == expected


# --- a 2-step run from each config ------------------------------------------------------------------

def duorc_from_squad(path: Path, max_paragraphs: int) -> list[dict]:
    """DuoRC's layout (lit_rcqa/data/duorc.py: a list of movies {id, title, plot, qa: [{id, question,
    answers: [str], no_answer}]}) with SQuAD v2 paragraphs as plots and their answer texts as free text."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    paragraphs = [(a["title"], p) for a in doc["data"] for p in a["paragraphs"]][:max_paragraphs]
    return [{"id": f"movie{i}", "title": title, "plot": p["context"],
             "qa": [{"id": qa["id"], "question": qa["question"],
                     "answers": list(dict.fromkeys(x["text"] for x in qa["answers"])),
                     "no_answer": qa["is_impossible"]} for qa in p["qas"]]}
            for i, (title, p) in enumerate(paragraphs)]


@pytest.fixture(scope="module")
def data_tree(tmp_path_factory) -> Path:
    """root/work (the cwd), root/shared/data, root/squad ($SQUAD_DIR), root/duorc ($DUORC_DIR)."""
    root = tmp_path_factory.mktemp("configs")
    (root / "work").mkdir()
    shared, squad, duorc = root / "shared" / "data", root / "squad", root / "duorc"
    for folder in (shared, squad, duorc):
        folder.mkdir(parents=True)
    shutil.copyfile(SQUAD_V1_EXTRACT, shared / "train-v1.1-subset-44articles.json")
    (shared / "dev-v1.1.json.gz").write_bytes(gzip.compress(SQUAD_V1_EXTRACT.read_bytes()))
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        shutil.copyfile(SQUAD_V1_EXTRACT, squad / name)
    for name in ("train-v2.0.json", "dev-v2.0.json"):
        shutil.copyfile(SQUAD_V2_EXTRACT, squad / name)
    movies = json.dumps(duorc_from_squad(SQUAD_V2_EXTRACT, max_paragraphs=4))
    for name in ("SelfRC_train.json", "SelfRC_dev.json"):
        (duorc / name).write_text(movies, encoding="utf-8")
    return root


# Our changes to every config: a tiny model on the CPU, 2 optimizer steps, a few short windows.
def overrides(model_dir: Path, run_name: str) -> dict[str, str]:
    return {"model.model_name_or_path": str(model_dir), "trainer.accelerator": "cpu", "trainer.precision": "32",
            "trainer.max_steps": "2", "trainer.max_epochs": "1", "trainer.limit_train_batches": "2",
            "trainer.enable_progress_bar": "false", "data.max_train_examples": "8",
            "data.max_eval_examples": str(EVAL_EXAMPLES), "data.synthetic_train_size": "16",
            "data.synthetic_dev_size": str(EVAL_EXAMPLES), "data.max_seq_length": "128", "data.doc_stride": "32",
            "data.max_query_length": "16", "data.batch_size": "4", "data.eval_batch_size": "8",
            "run.logger": "none", "run.name": run_name}


# Runs every job {name: argv} in this one process, as `python train.py ARGV` would, each with its own
# log, and writes {name: exit code}. One Python start and one import of torch/Lightning for all configs
# (about 10 s of CPU each time) instead of one per config.
DRIVER = """
import contextlib, json, os, sys, traceback
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as train.py
from lit_rcqa.cli import main
jobs, out = json.loads(sys.argv[1]), sys.argv[2]
codes = {}
for name, argv in jobs.items():
    with (open(os.path.join(out, name + ".log"), "w") as log, contextlib.redirect_stdout(log),
          contextlib.redirect_stderr(log)):
        try:
            codes[name] = main(argv)
        except SystemExit as exc:
            codes[name] = exc.code
        except Exception:  # reported in its log; the other configs still run
            traceback.print_exc()
            codes[name] = "exception"
with open(os.path.join(out, "codes.json"), "w") as f:
    json.dump(codes, f)
"""


@pytest.fixture(scope="module")
def two_step_runs(data_tree, tiny_model_dir) -> dict[str, object]:
    """Exit code per config of a 2-step run, all started in one subprocess from data_tree/work."""
    jobs = {name: [*config_args(name), *(a for k, v in overrides(tiny_model_dir, run_name(name)).items()
                                         for a in (f"--{k}", v))] for name in SHIPPED}
    logs = data_tree / "logs"
    logs.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1", "SQUAD_DIR": str(data_tree / "squad"), "DUORC_DIR": str(data_tree / "duorc")}
    env.pop("LIT_RCQA_RUN_NAME", None)
    env.pop("WANDB_SERVICE", None)  # the child must own its tracker (see tests/test_train.py)
    result = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(jobs), str(logs)], cwd=data_tree / "work",
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads((logs / "codes.json").read_text())


def run_name(config: str) -> str:
    return config.removesuffix(".yaml")


@pytest.mark.parametrize("name", SHIPPED)
def test_a_two_step_run_starts_from_the_config(name, two_step_runs, data_tree, tiny_model_dir):
    log = (data_tree / "logs" / f"{name}.log").read_text()
    assert two_step_runs[name] == 0, log[-4000:]

    run = data_tree / "work" / "runs" / run_name(name)
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["total"] == EVAL_EXAMPLES and 0 <= metrics["exact_match"] <= metrics["f1"] <= 100
    if expected_settings(name)["model.version_2_with_negative"]:  # scored with no-answer questions
        assert metrics["NoAns_total"] > 0
    assert len(json.loads((run / "predictions.json").read_text())) == EVAL_EXAMPLES
    # The run used the config: every setting we did not change is the config's own.
    changed = overrides(tiny_model_dir, run_name(name))
    saved = leaves(yaml.safe_load((run / "config.yaml").read_text()))
    expected = {k: v for k, v in expected_settings(name).items() if k not in changed}
    assert {k: saved.get(k, "<absent>") for k in expected} == expected
    assert saved["trainer.max_steps"] == 2 and saved["model.model_name_or_path"] == str(tiny_model_dir)


# --- the suite's own markers ----------------------------------------------------------------------

def test_a_ddp_test_not_marked_slow_is_a_collection_error():
    """The README says `-m "not slow"` leaves out multi-process DDP; conftest's hook stops any run
    that collects a ddp test without the slow marker."""

    class Item:  # what the hook reads of a collected test
        def __init__(self, nodeid: str, *marks: str):
            self.nodeid, self.marks = nodeid, marks

        def get_closest_marker(self, name: str):
            return name if name in self.marks else None

    conftest.pytest_collection_modifyitems(None, [Item("t::ok", "ddp", "slow"), Item("t::slow", "slow"), Item("t::plain")])
    with pytest.raises(pytest.UsageError, match=r"t::fast_ddp$"):
        conftest.pytest_collection_modifyitems(None, [Item("t::ok", "ddp", "slow"), Item("t::fast_ddp", "ddp")])
