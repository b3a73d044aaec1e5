"""Every family's `train.py` (3 steps) and then `analyze.py --layers all` (2 questions) on that same run, all
in ONE subprocess, once per test session.

    runs = family_runs(tmp_path_factory)      # the first call runs everything; later calls return the same
    runs.assert_ok("deberta-v2", "train")     # exit code 0, else the tail of that command's own log
    runs.run_dir("deberta-v2")                # runs/deberta-v2: run.json, model/, predictions.json, analysis/

tests/test_families_train.py reads what train.py wrote and tests/test_families_analyze.py what analyze.py
wrote. The child calls the entry points' `main(argv)` one after another, as `python train.py ARGV` and
`python analyze.py ARGV` would, each with its own log and exit code (a failure, even an exception, is that
command's alone: the next family still runs). Python, torch, Lightning and transformers are imported once
for all 9 families (about 10 s of CPU each time) instead of twice per family, and each family is trained once.

Repeated calls in one process are safe: every call parses its own arguments and builds its own trainer,
model, data and output folder, and both commands run with `--logger none` (W&B, the one tracker that keeps
process-wide state, is covered by tests/test_tracking.py with its own processes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lit_rcqa.paths import REPO_ROOT
from tests.families import FAMILIES, GENERIC_ONLY, build_family, build_mpnet

ALL_FAMILIES = (*FAMILIES, GENERIC_ONLY)
DEV_SIZE = 8  # dev questions each run predicts
ANALYZED = 2  # questions analyze.py explains

TRAIN_ARGS = ["--trainer.max_steps", "3", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
              "--run.logger", "none", "--model.learning_rate", "1e-3", "--data.synthetic_train_size", "24",
              "--data.synthetic_dev_size", str(DEV_SIZE), "--data.batch_size", "8", "--data.eval_batch_size", "16",
              "--data.max_seq_length", "96", "--data.doc_stride", "32", "--data.max_query_length", "32"]
# Hidden states (t-SNE, a figure per layer) of one of the two: t-SNE and its figures are most of analyze.py's
# time here, and a second example would take the same family-independent path again.
ANALYZE_ARGS = ["--layers", "all", "--num-examples", str(ANALYZED), "--steps", "4", "--hidden-examples", "1",
                "--logger", "none", "--no-progress"]
# All 9 families: about 1.5 minutes of CPU. The first test to ask for the runs waits for them inside its own
# pytest-timeout (600 s by default), so the tests that ask for them carry LIMIT (`pytest.mark.timeout(LIMIT)`).
TIMEOUT_S = 900
LIMIT = TIMEOUT_S + 120

# argv: a JSON {family: [train argv, analyze argv]} and the logs folder. Writes logs/<family>.<step>.log and,
# after every command, logs/codes.json {family: {"train": code, "analyze": code}} (replaced atomically, so
# a child stopped by the timeout still leaves the codes of the commands that finished).
DRIVER = """
import contextlib, json, os, signal, sys, traceback
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as train.py and analyze.py
# default SIGINT/SIGTERM, as a shell starts a foreground job, even when the test run ignores them
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, signal.SIG_DFL)
from analyze import main as analyze
from lit_rcqa.cli import main as train
jobs, logs = json.loads(sys.argv[1]), sys.argv[2]
codes = {}

def call(entry, argv, log_path):
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            code = entry(argv)
        except SystemExit as exc:
            code = exc.code
        except Exception:  # reported in its own log; the other families still run
            traceback.print_exc()
            return "exception"
    return 0 if code is None else code

def save():
    with open(os.path.join(logs, "codes.json.tmp"), "w") as f:
        json.dump(codes, f)
    os.replace(os.path.join(logs, "codes.json.tmp"), os.path.join(logs, "codes.json"))

for family, (train_argv, analyze_argv) in jobs.items():
    codes[family] = {"train": call(train, train_argv, os.path.join(logs, family + ".train.log"))}
    save()
    if codes[family]["train"] == 0:
        codes[family]["analyze"] = call(analyze, analyze_argv, os.path.join(logs, family + ".analyze.log"))
        save()
"""


@dataclass(frozen=True)
class FamilyRuns:
    root: Path  # base/<family> (the untrained models), work/runs/<family> (the runs), logs/
    codes: dict[str, dict[str, object]]
    problem: str  # why the child did not finish (a crash, the timeout); "" when it did

    def base(self, family: str) -> Path:
        return self.root / "base" / family

    def run_dir(self, family: str) -> Path:
        return self.root / "work" / "runs" / family

    def log(self, family: str, step: str) -> str:
        path = self.root / "logs" / f"{family}.{step}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else f"(no {path.name})"

    def assert_ok(self, family: str, step: str) -> None:
        """`step` ("train" or "analyze") of `family` exited with 0; otherwise fail with its log's tail."""
        code = self.codes.get(family, {}).get(step, "not run")
        assert code == 0, f"{step} of {family}: exit {code}; {self.problem}\n{self.log(family, step)[-4000:]}"


def run_all(root: Path) -> FamilyRuns:
    jobs = {}
    for family in ALL_FAMILIES:
        base = root / "base" / family
        build_mpnet(base) if family == GENERIC_ONLY else build_family(family, base)
        run = root / "work" / "runs" / family
        jobs[family] = [["--model.model_name_or_path", str(base), "--run.name", family, *TRAIN_ARGS],
                        ["--run", str(run), *ANALYZE_ARGS]]
    logs = root / "logs"
    logs.mkdir()
    (root / "work").mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}
    env.pop("LIT_RCQA_RUN_NAME", None)
    env.pop("WANDB_SERVICE", None)  # the child must own its tracker (see tests/test_train.py)
    problem = ""
    try:
        result = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(jobs), str(logs)], cwd=root / "work",
                                env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        if result.returncode != 0:
            problem = f"the driver exited with {result.returncode}: {result.stderr[-2000:]}"
    except subprocess.TimeoutExpired:
        problem = f"the driver was stopped after {TIMEOUT_S} s"
    codes_file = logs / "codes.json"
    codes = json.loads(codes_file.read_text()) if codes_file.is_file() else {}
    return FamilyRuns(root, codes, problem)


_SESSION: dict[str, FamilyRuns] = {}


def family_runs(tmp_path_factory) -> FamilyRuns:
    """The runs of every family, made on the first call of the test session (both test files share them)."""
    if "runs" not in _SESSION:
        _SESSION["runs"] = run_all(tmp_path_factory.mktemp("family-runs"))
    return _SESSION["runs"]
