"""Seeded, stratified splits and checks every data set goes through."""

from __future__ import annotations

import numpy as np

from automl.exceptions import DataError


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Split indices into len(fractions) parts, class by class, reproducibly for a seed.

    Every class with enough samples is present in every part; the last part takes the remainder.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n = len(idx)
        bounds = np.floor(np.cumsum(fractions)[:-1] * n + 0.5).astype(int)
        for k, chunk in enumerate(np.split(idx, bounds)):
            parts[k].append(chunk)
    out = []
    for chunks in parts:
        merged = np.concatenate(chunks) if chunks else np.array([], dtype=int)
        rng.shuffle(merged)
        out.append(merged.astype(np.int64))
    return out


def check_labels(labels: np.ndarray, classes: list[str], source: str) -> None:
    """A classification set needs samples and at least two classes."""
    if len(labels) == 0:
        raise DataError(f"{source}: no samples found")
    present = np.unique(labels)
    if len(present) < 2:
        only = classes[int(present[0])] if len(present) else "?"
        raise DataError(f"{source}: only one class ('{only}') found; a classifier needs at least two")


def train_val_test(
    strata: np.ndarray, val_fraction: float, test_fraction: float, seed: int, source: str, unit: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified train / validation / test indices; a DataError when a part would be empty
    (``unit`` names the samples in the message: "rows", "texts")."""
    fr = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    tr, va, te = stratified_split(strata, fr, seed)
    if len(tr) < 2 or len(va) < 1 or len(te) < 1:
        raise DataError(f"--data {source}: {len(strata)} {unit} are too few to split into train/validation/test")
    return tr, va, te


def train_val(
    strata: np.ndarray, val_fraction: float, test_fraction: float, seed: int, source: str, unit: str
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train / validation indices of a set whose test split is a separate file
    (``--test-data``): validation keeps its share of what is not test, val / (1 - test)."""
    v = val_fraction / (1.0 - test_fraction)
    tr, va = stratified_split(strata, (1.0 - v, v), seed)
    if len(tr) < 2 or len(va) < 1:
        raise DataError(f"--data {source}: {len(strata)} {unit} are too few to split into train/validation")
    return tr, va


def test_file_error(exc: DataError, test_source: str) -> DataError:
    """A DataError about the test file names ``--test-data``, not ``--data``."""
    return DataError(str(exc).replace(f"--data {test_source}", f"--test-data {test_source}", 1))
