"""Random-access 16 kHz / output audio for the conversion pipeline: in memory or in raw temp files.

The pipeline reads segments, padding and envelopes through a ``Reader`` so
that the same code serves an in-memory array (short inputs) and a raw temp
file (long inputs, bounded memory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Reader(Protocol):
    n: int

    def read(self, start: int, stop: int) -> np.ndarray: ...


class ArrayReader:
    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.n = int(x.shape[0])

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.x[max(0, start) : max(0, min(stop, self.n))]


class RawFile:
    """A growing file of raw samples; read back with plain reads (no memory map: RSS stays low)."""

    def __init__(self, path: Path, dtype: Any) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.n = 0
        self._fh = open(self.path, "w+b")

    def write(self, x: np.ndarray) -> None:
        data = np.ascontiguousarray(x, dtype=self.dtype)
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(data.tobytes())
        self.n += int(data.shape[0])

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), max(0, min(stop, self.n))
        if stop <= start:
            return np.zeros(0, self.dtype)
        self._fh.flush()
        self._fh.seek(start * self.dtype.itemsize)
        return np.frombuffer(self._fh.read((stop - start) * self.dtype.itemsize), dtype=self.dtype).copy()

    def close(self) -> None:
        self._fh.close()


class ListWriter:
    """An in-memory sink: the pieces written, joined on demand."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.n = 0

    def write(self, x: np.ndarray) -> None:
        self.parts.append(np.asarray(x, dtype=np.float32))
        self.n += int(x.shape[0])

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def reflect_indices(idx: np.ndarray, n: int) -> np.ndarray:
    """Source positions of ``np.pad(x, ..., mode="reflect")`` for (possibly out-of-range) positions."""
    idx = np.asarray(idx, dtype=np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    j = np.abs(idx) % period
    return np.where(j >= n, period - j, j)


def read_reflect(src: Reader, start: int, stop: int) -> np.ndarray:
    """``np.pad(x, big, "reflect")[big + start : big + stop]`` of the source, read lazily."""
    n = src.n
    if start >= 0 and stop <= n:
        return src.read(start, stop)
    lo, hi = max(0, start), min(n, stop)
    idx = reflect_indices(np.arange(start, stop), n)
    base_lo, base_hi = int(idx.min()), int(idx.max()) + 1
    if hi > lo:
        base_lo, base_hi = min(base_lo, lo), max(base_hi, hi)
    block = src.read(base_lo, base_hi)
    return block[idx - base_lo]
