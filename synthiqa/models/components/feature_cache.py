"""Frozen-encoder features kept in memory per encoder and image, so that a protocol's splits over one
dataset extract each image's features once instead of once per split.

A key names the encoder (a checkpoint file's path, size and modification time plus the settings that
change its features); an image is keyed by its absolute path, size and modification time, so an edited
file is extracted again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np


def file_key(path: str | Path) -> tuple[str, int, int]:
    """``(absolute path, size in bytes, modification time in ns)`` of an existing file."""
    st = os.stat(path)
    return os.path.abspath(str(path)), int(st.st_size), int(st.st_mtime_ns)


class FeatureCache:
    """Per-encoder, per-image feature arrays; ``max_encoders`` encoders are kept (the oldest goes)."""

    def __init__(self, max_encoders: int = 4):
        self.max_encoders = max_encoders
        self._store: dict[Hashable, dict[tuple[str, int, int], np.ndarray]] = {}

    def features(self, encoder: Hashable, paths: Sequence[str | Path],
                 compute: Callable[[list[str | Path]], np.ndarray]) -> np.ndarray:
        """The stacked features of ``paths``; ``compute(missing_paths)`` extracts those not cached yet
        (one call, in order) and must return one row per path."""
        store = self._store.setdefault(encoder, {})
        if len(self._store) > self.max_encoders:
            del self._store[next(iter(self._store))]
        keys = [file_key(p) for p in paths]
        missing = [(p, k) for p, k in zip(paths, keys, strict=True) if k not in store]
        if missing:
            rows = compute([p for p, _ in missing])
            for (_, key), row in zip(missing, rows, strict=True):
                store[key] = row
        return np.stack([store[k] for k in keys]) if keys else np.empty((0,))

    def clear(self) -> None:
        self._store.clear()
