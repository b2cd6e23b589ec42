"""Data of the anomaly task: which rows (or image classes) are normal, and the one-class splits.

With labels, normal rows are split train / validation / test by the usual fractions and the
anomalies are split between validation and test only (half each, the odd one to validation): the
models train on normal rows, so an anomaly in the training split would be wasted, and even a handful
of anomalies then reaches both evaluation splits. Without labels every row is a training candidate
and the rows are split at random.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from automl.data.splits import stratified_split
from automl.exceptions import DataError

if TYPE_CHECKING:
    from automl.data.bundle import DataConfig

#: label values read as "normal" when a two-valued label column has one of them (case-insensitive)
NORMAL_NAMES = ("normal", "0", "false", "inlier", "ok", "good", "negative", "no")
#: the anomaly share assumed for the threshold of an unlabelled table without --contamination
DEFAULT_CONTAMINATION = 0.01


def normal_values(values: list[str], counts: dict[str, int], cfg: DataConfig, what: str) -> tuple[set[str], str]:
    """(the label values that are normal, a note saying how they were chosen).

    ``--normal`` names them; otherwise a two-valued label is read by its names (``normal``, ``0``,
    ``false`` …) or, failing that, its more frequent value is normal (anomalies are the rare ones).
    Three or more values need ``--normal``."""
    shown = ", ".join(repr(v) for v in values[:8]) + (f" and {len(values) - 8} more" if len(values) > 8 else "")
    if cfg.normal:
        unknown = [v for v in cfg.normal if v not in counts]
        if unknown:
            raise DataError(f"--normal {unknown[0]!r} is not a value of {what} ({shown})")
        return set(cfg.normal), f"normal: {', '.join(repr(v) for v in cfg.normal)} (--normal)"
    if len(values) > 2:
        raise DataError(f"{what} has {len(values)} values ({shown}); say which are normal with "
                        "--normal VALUE[,VALUE...] (the others are anomalies)")
    if len(values) == 1:
        return set(values), f"normal: {values[0]!r} (the only value)"
    named = [v for v in values if v.lower() in NORMAL_NAMES]
    if len(named) == 1:
        return {named[0]}, f"normal: {named[0]!r} (by its name; --normal changes it)"
    common = max(values, key=lambda v: (counts[v], v))
    return {common}, f"normal: {common!r} (the more frequent value; --normal changes it)"


def one_class_split(is_anomaly: np.ndarray, cfg: DataConfig, source: str,
                    unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train (normal only) / validation / test indices; DataError when validation or test would hold
    no anomaly."""
    normal, anomalous = np.flatnonzero(~is_anomaly), np.flatnonzero(is_anomaly)
    if len(anomalous) < 2:
        why = ("no row is an anomaly" if not len(anomalous)
               else "only 1 row is an anomaly (one is needed for validation and one for test)")
        raise DataError(f"--data {source}: no anomalies in the validation split: {why}; labelled anomalies choose the "
                        "model and its threshold (or drop --target and give --contamination to train without labels)")
    fr = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
    tr, va, te = (normal[p] for p in stratified_split(np.zeros(len(normal), dtype=np.int64), fr, cfg.seed))
    rng = np.random.default_rng(cfg.seed + 1)
    order = rng.permutation(anomalous)
    half = (len(order) + 1) // 2
    va, te = np.sort(np.concatenate([va, order[:half]])), np.sort(np.concatenate([te, order[half:]]))
    if len(tr) < 2 or not len(va) or not len(te):
        raise DataError(f"--data {source}: {len(normal)} normal {unit} are too few to split into "
                        "train/validation/test")
    return tr, va, te


def random_split(n: int, cfg: DataConfig, source: str, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random train / validation / test indices of an unlabelled set."""
    fr = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
    tr, va, te = stratified_split(np.zeros(n, dtype=np.int64), fr, cfg.seed)
    if len(tr) < 2 or not len(va) or not len(te):
        raise DataError(f"--data {source}: {n} {unit} are too few to split into train/validation/test")
    return tr, va, te


def choose_threshold(scores: np.ndarray, y: np.ndarray | None, contamination: float | None) -> tuple[float, str]:
    """(threshold, how it was chosen): with labels the score that maximises F1 on validation (a row
    is an anomaly when its score >= the threshold); without, the ``1 - contamination`` quantile."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=np.inf)
    if y is not None and 0 < int(y.sum()) < len(y):
        from sklearn.metrics import precision_recall_curve

        precision, recall, thresholds = precision_recall_curve(y, s)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = int(np.argmax(f1))
        return float(thresholds[best]), (f"maximises F1 on the validation split (F1 {f1[best]:.3f}, precision "
                                         f"{precision[best]:.3f}, recall {recall[best]:.3f})")
    q = DEFAULT_CONTAMINATION if contamination is None else float(contamination)
    how = f"--contamination {q:g}" if contamination is not None else f"default contamination {q:g}"
    return (float(np.quantile(s, 1.0 - q)),
            f"the {100 * (1 - q):g}th percentile of held-out reconstruction scores ({how})")


class SplitCuts:
    """The thresholds (score units) one scorer takes f1 at, per split, so that f1 is "at the chosen
    threshold": the validation split's is chosen on it (``choose_threshold``) each time it is scored
    (every epoch, every trial); another split keeps the first cut it was scored at: the validation one
    when there is one (best.json's test f1 is at the threshold stored with the model), else one chosen
    on it (compress scores the test split first, so all its variants are compared at one cut).
    ``y_val``: the validation targets (None: the first split scored is the validation one)."""

    def __init__(self, y_val: np.ndarray | None, contamination: float | None) -> None:
        self._val_key = None if y_val is None else _key(y_val)
        self._contamination = contamination
        self._val: float | None = None
        self._cuts: dict[str, float] = {}

    def cut(self, scores: np.ndarray, y: np.ndarray) -> float:
        """The threshold f1 of ``scores`` against ``y`` is taken at (a row is an anomaly from it on)."""
        key = _key(y)
        if self._val_key is None:
            self._val_key = key
        if key == self._val_key:
            self._val = choose_threshold(scores, y, self._contamination)[0]
            return self._val
        if key not in self._cuts:
            self._cuts[key] = self._val if self._val is not None else choose_threshold(scores, y,
                                                                                       self._contamination)[0]
        return self._cuts[key]


def _key(y: np.ndarray) -> str:
    """A split's identity: the digest of its targets (the splits of one data set differ in them)."""
    import hashlib

    t = np.ascontiguousarray(np.asarray(y).reshape(-1), dtype=np.int64)
    return f"{len(t)}:{hashlib.sha256(t.tobytes()).hexdigest()}"
