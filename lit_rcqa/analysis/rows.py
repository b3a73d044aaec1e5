"""`RowBuffer`: fixed-width numeric rows appended one at a time into one contiguous array.

For the few statistics that need every example's value (exact medians and percentiles), an accumulator
keeps one small row of numbers per example here instead of a Python list of arrays or tuples: 8 bytes
per float64 value (about 16 bytes with the doubling slack), no per-row object headers, and nothing that
refers back to the record.
"""

from __future__ import annotations

import numpy as np


class RowBuffer:
    """Rows of `width` values of one dtype; `array()` is a view of the rows added so far ([n, width])."""

    def __init__(self, width: int, dtype=np.float64, capacity: int = 64):
        if width < 1 or capacity < 1:
            raise ValueError(f"width and capacity must be at least 1, got {width} and {capacity}")
        self._data = np.empty((capacity, width), dtype=dtype)  # [capacity, width]
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def width(self) -> int:
        return self._data.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes held, spare capacity included."""
        return self._data.nbytes

    def append(self, row) -> None:
        values = np.asarray(row, dtype=self._data.dtype).reshape(-1)
        if values.shape != (self.width,):
            raise ValueError(f"row has {values.size} values, expected {self.width}")
        if self._n == len(self._data):  # doubling: amortised O(1) per row, at most 2x the needed bytes
            grown = np.empty((2 * len(self._data), self.width), dtype=self._data.dtype)
            grown[:self._n] = self._data
            self._data = grown
        self._data[self._n] = values
        self._n += 1

    def array(self) -> np.ndarray:
        """[n, width] the rows added so far (a read-only view; copy it to keep it past further appends)."""
        view = self._data[:self._n]
        view.flags.writeable = False
        return view
