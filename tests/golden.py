"""The golden analysis: the fixed tiny run that `tests/fixtures/golden-analysis/` was computed from.

`python -m tests.golden OUT` recomputes it into OUT/out (OUT/runs/tiny holds the tiny run). The committed
folder was written by the code of 2026-12-01 (store schema 2), before the attribution record, the store
and the analyses were reorganised (issue 11); `tests/test_golden.py` holds every later version to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from tests.tiny_run import make_tiny_run

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden-analysis"
ARGS = ["--num-examples", "6", "--hidden-examples", "2", "--logger", "none", "--no-progress"]
# The adaptive rule the folder was made with (Lobatto-5 panels, two to start with, split at every node, fraction ½,
# Σ|e_p|): the default until lazy splits (2026-12-01) and Simpson panels (2026-12-02).
RULE = ["--ig.split", "nodes", "--ig.refine_fraction", "0.5", "--ig.panel_points", "5", "--ig.panels", "2",
        "--ig.criterion", "panels"]


def compute(root: Path, rule: list[str] = RULE) -> Path:
    """Train-free tiny run + analyze.py (adaptive IG with `rule`, every analysis) -> the output folder."""
    from analyze import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the golden folder was computed on one thread
    try:
        run = make_tiny_run(root / "runs" / "tiny")
        out = root / "out"
        assert main(["--run", str(run), "--out", str(out), *ARGS, *rule]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


if __name__ == "__main__":
    print(compute(Path(sys.argv[1])))
