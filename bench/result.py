"""The one result shape every bench's `main(argv) -> dict` returns, so `bench/run_all` can tabulate them.

    {"bench": "metrics", "title": "...", "skipped": None | "why",
     "rows": [{"comparison", "unit", "ours", "reference", "ratio", "target", "met"}, ...],
     "details": {...anything bench-specific...}}

`ratio` is always "how many times better ours is" (reference/ours for times and sizes, ours/reference
for rates); `target` is the ratio we aim for (None: reported only); `met` is ratio >= target.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional


def row(comparison: str, unit: str, ours: float, reference: float, *, higher_is_better: bool = True,
        target: Optional[float] = None) -> dict[str, Any]:
    ratio = (ours / reference if higher_is_better else reference / ours) if ours and reference else float("nan")
    return {"comparison": comparison, "unit": unit, "ours": ours, "reference": reference, "ratio": ratio,
            "target": target, "met": None if target is None else bool(ratio >= target)}


def result(bench: str, title: str, rows: list[dict], details: dict, skipped: Optional[str] = None) -> dict[str, Any]:
    return {"bench": bench, "title": title, "skipped": skipped, "rows": rows, "details": details}


def skipped(bench: str, title: str, why: str) -> dict[str, Any]:
    print(f"[{bench}] skipped: {why}")
    return result(bench, title, [], {}, skipped=why)


def timed(fn: Callable, *args, **kwargs) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def median(values: list[float]) -> float:
    return statistics.median(values)
