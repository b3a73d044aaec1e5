"""The edge of the analysis pipeline: figures, tables and pages written atomically and sent to the tracker.

Every file is written to a temporary name in its folder and renamed into place, so an interrupted run
leaves whole files or none. Tables go out as CSV and as JSON ({"columns", "rows": [{...}], "meta"});
non-finite numbers become empty CSV cells and JSON nulls, so strict parsers read them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from lit_rcqa import tracking
from lit_rcqa.plots.report import FigureRef, TableData
from lit_rcqa.process import write_bytes_atomic, write_text_atomic


def plain(value: Any) -> Any:
    """numpy scalars and arrays -> Python values; NaN and ±inf -> None (JSON has no such numbers)."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ArtifactWriter:
    """Writes `<out>/figures/*.png`, `<out>/tables/*.{csv,json}` and pages; sends each to `tracker` if given."""

    def __init__(self, out_dir: Path, tracker: tracking.Dashboard | None = None, prefix: str = "analysis"):
        self.out_dir = Path(out_dir)
        self.tracker = tracker if tracker is not None else tracking.Dashboard(None, [])
        self.prefix = prefix
        self.files: list[str] = []     # paths relative to out_dir, in the order written
        for sub in ("figures", "tables"):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)

    def figure(self, name: str, fig: Figure, caption: str = "", *, key: str | None = None,
               layer: str | None = None) -> FigureRef:
        """Save as `figures/<name>.png`, send it as an image (under `key`, default `name`; with `layer`, as that
        layer's frame of the key), then release the figure's artists."""
        rel = f"figures/{name}.png"
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110)
        write_bytes_atomic(self.out_dir / rel, png.getvalue())
        self.tracker.image(f"{self.prefix}/{key or name}", self.out_dir / rel, layer, caption)
        fig.clear()
        self.files.append(rel)
        return FigureRef(rel, caption)

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              meta: Mapping[str, Any] | None = None) -> TableData:
        """Write `tables/<name>.csv` and `tables/<name>.json`; log as a table."""
        columns = list(columns)
        rows = [plain(list(r)) for r in rows]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in r] for r in rows])
        record = {"columns": columns, "rows": [dict(zip(columns, r)) for r in rows], "meta": plain(dict(meta or {}))}
        write_text_atomic(self.out_dir / "tables" / f"{name}.csv", buffer.getvalue())
        write_text_atomic(self.out_dir / "tables" / f"{name}.json",
                          json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False))
        self.tracker.table(f"{self.prefix}/tables/{name}", columns, rows)  # not the key of the figure `name`
        self.files += [f"tables/{name}.csv", f"tables/{name}.json"]
        return TableData(name, columns, rows, link=f"tables/{name}.csv")

    def page(self, rel: str, text: str, log_name: str | None = None) -> None:
        """Write an HTML page under out_dir and log it as HTML under `log_name`."""
        write_text_atomic(self.out_dir / rel, text)
        if log_name:
            self.tracker.html(f"{self.prefix}/{log_name}", text)
        self.files.append(rel)
