"""Ensemble selection over a search's own trials (Caruana et al. 2004, "Ensemble selection from
libraries of models"; the way auto-sklearn and AutoGluon build their final model).

What a trial leaves behind (``automl.search.objective``): a *candidate* trial keeps its weights
(``trial-N.pt``) and its validation predictions beside them (``trial-N.val.npy``, float32, plain
``.npy``: class probabilities (N, C) for classification, values (N,) for regression; under ``--cv``
the out-of-fold predictions of the training + validation rows, in that order). A candidate is one of
the study's ``CANDIDATES`` best completed trials or of its family's ``PER_FAMILY`` best, decided from
the storage like the family bests, so the files kept are bounded however long a search runs.

Selection (``select``): greedy forward selection *with replacement* on those predictions, at most
``MAX_ROUNDS`` rounds; each round adds the candidate whose addition scores best, and the best
ensemble along the way is kept (Caruana's "best prefix"). The score is the study's own metric, the
number best.pt is judged by (auto-sklearn and AutoGluon also select on the task's metric); for
classification a tie on the metric — frequent with accuracy, a step function — is broken by the log
loss of the averaged probabilities, which is smooth, so selection does not wander among equal
accuracies. A latency cap (``max_latency_ms``) admits a candidate only while the summed measured
latencies of the distinct members stay within it (each member is a separate sub-graph of the one
exported graph, run one after another on one thread); the caller measures the built ensemble again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: the study's best completed trials that stay candidates (weights + validation predictions kept)
CANDIDATES = 12
#: and each model family's best trials (so a family that is good but never the best still enters)
PER_FAMILY = 3
#: rounds of greedy selection (with replacement): an ensemble holds at most this many distinct members
MAX_ROUNDS = 25
#: the most float32 values one trial's predictions may hold (400 MB): beyond, no predictions are kept
MAX_PREDICTION_VALUES = 100_000_000
#: probabilities are floored here in the log loss (a tie-break only)
EPS = 1e-7


def predictions_path(ckpt_dir: Path | str, number: int) -> Path:
    """Where trial ``number``'s validation predictions are kept (beside ``trial-N.pt``)."""
    return Path(ckpt_dir) / f"trial-{number}.val.npy"


def as_predictions(out: Any, regression: bool) -> np.ndarray:
    """A model's raw outputs (logits, or values) -> what is kept: float32 probabilities (N, C) or
    values (N,)."""
    import torch

    out = out.detach().float().cpu()
    if regression:
        return out.reshape(len(out), -1)[:, 0].numpy().astype(np.float32)
    return torch.softmax(out, dim=-1).numpy().astype(np.float32)


def save_predictions(path: Path, preds: np.ndarray) -> bool:
    """Write ``preds`` as float32 ``.npy`` (atomic); False (nothing written) when over the size cap."""
    import os
    import tempfile

    if preds.size > MAX_PREDICTION_VALUES:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(preds, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def load_predictions(path: Path, rows: int, classes: int | None) -> np.ndarray | None:
    """Kept predictions of the expected shape ((rows, classes) or (rows,)), or None when missing,
    unreadable or of another shape (a resumed study on other data)."""
    try:
        preds = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError):
        return None
    want = (rows,) if classes is None else (rows, classes)
    if preds.dtype != np.float32 or preds.shape != want:
        return None
    return np.asarray(preds)


def candidate_numbers(trials: Sequence[Any], maximize: bool, family_of: Callable[[Any], str]) -> set[int]:
    """Numbers of the completed ``trials`` (Optuna frozen trials with ``values``) that are candidates:
    the ``CANDIDATES`` best overall and the ``PER_FAMILY`` best of each family (ties: earlier first)."""
    import math

    done = [t for t in trials if t.values and t.values[0] is not None and math.isfinite(t.values[0])]
    done.sort(key=lambda t: (-t.values[0] if maximize else t.values[0], t.number))
    keep = {t.number for t in done[:CANDIDATES]}
    seen: dict[str, int] = {}
    for t in done:
        fam = family_of(t)
        if seen.get(fam, 0) < PER_FAMILY:
            keep.add(t.number)
            seen[fam] = seen.get(fam, 0) + 1
    return keep


def would_be_candidate(trials: Sequence[Any], value: float, family: str, maximize: bool,
                       family_of: Callable[[Any], str]) -> bool:
    """Whether a trial of ``family`` finishing with ``value`` is a candidate among the completed ``trials``."""
    import math

    better = [t for t in trials if t.values and t.values[0] is not None and math.isfinite(t.values[0])
              and (t.values[0] >= value if maximize else t.values[0] <= value)]
    return len(better) < CANDIDATES or sum(family_of(t) == family for t in better) < PER_FAMILY


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log probability of the true classes (the tie-break of classification)."""
    p = probs[np.arange(len(y)), y.astype(np.int64)]
    return float(-np.log(np.clip(p, EPS, 1.0)).mean())


def metric_scorer(metric_fn: Callable[[Any, Any], float], y: np.ndarray,
                  regression: bool) -> Callable[[np.ndarray], float]:
    """The study's metric of averaged predictions: the task's own ``metric_fn`` (which reads logits, or
    values), given ``log(probabilities)`` (softmax of which are the probabilities) or the values."""
    import torch

    target = torch.from_numpy(np.asarray(y))

    def score(pred: np.ndarray) -> float:
        t = torch.from_numpy(pred.reshape(-1, 1) if regression else np.log(np.clip(pred, 1e-30, None)))
        return float(metric_fn(t, target))

    return score


def select(preds: np.ndarray, score: Callable[[np.ndarray], float], maximize: bool, *,
           y: np.ndarray | None = None, rounds: int = MAX_ROUNDS, latencies: Sequence[float | None] | None = None,
           max_latency_ms: float | None = None) -> np.ndarray:
    """Greedy forward selection with replacement (see the module text) over ``preds`` (candidates x
    rows [x classes], float32), ordered best single first: how many times each candidate was picked
    in the best ensemble found (integer counts; weights are counts / their sum). ``y``: the true
    classes, for the log-loss tie-break (None: regression, no tie-break). With ``max_latency_ms``, a
    candidate whose latency is unknown or would take the distinct members' sum over it never enters;
    all zeros when none fits."""
    m = len(preds)
    counts = np.zeros(m, dtype=np.int64)
    total = np.zeros(preds.shape[1:], dtype=np.float64)
    best_counts, best_key = counts.copy(), None
    sign = 1.0 if maximize else -1.0

    def allowed(j: int) -> bool:
        if max_latency_ms is None:
            return True
        if latencies is None or latencies[j] is None:
            return False
        members = {i for i in range(m) if counts[i]} | {j}
        return sum(float(latencies[i]) for i in members) <= max_latency_ms  # type: ignore[arg-type]

    for k in range(1, max(0, rounds) + 1):
        choice, choice_key = None, None
        for j in range(m):
            if not allowed(j):
                continue
            avg = ((total + preds[j]) / k).astype(np.float32)
            # higher is better for the key: the metric (signed), then minus the log loss
            key = (sign * score(avg), -log_loss(avg, y) if y is not None else 0.0)
            if choice_key is None or key > choice_key:  # strict: ties keep the earlier (better single) one
                choice, choice_key = j, key
        if choice is None:
            break
        counts[choice] += 1
        total += preds[choice]
        if best_key is None or choice_key > best_key:  # the best prefix; ties keep the smaller ensemble
            best_counts, best_key = counts.copy(), choice_key
    return best_counts


def weights_of(counts: np.ndarray) -> np.ndarray:
    """Selection counts -> float32 weights summing to 1 over the picked candidates (same order)."""
    picked = counts[counts > 0].astype(np.float64)
    return (picked / picked.sum()).astype(np.float32)
