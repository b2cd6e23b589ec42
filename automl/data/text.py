"""Text data: reading labelled texts, the tokenizer and vocabulary, and THE one text encoder.

``fit_text_spec(texts)`` builds the vocabulary from the training split only and returns a plain spec
(stored in best.pt and in ONNX metadata)::

    {"kind": "text", "lowercase": true, "token_pattern": "...", "max_len": 48,
     "vocab": ["<pad>", "<unk>", "the", ...], "input_dtype": "int64"}

``encode_texts(texts, spec)`` lowercases, splits into word and punctuation tokens, maps tokens to ids
(``<unk>`` = 1 for words outside the vocabulary) and pads with ``<pad>`` = 0 or truncates at the end
to ``max_len``: an int64 batch (N, max_len).
"""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from automl.data.bounds import check_fields, check_table, check_text_folder
from automl.data.files import TableFile, guess_table_file
from automl.exceptions import DataError

if TYPE_CHECKING:
    from automl.data import PreprocessSpec

PAD, UNK = "<pad>", "<unk>"
TOKEN_PATTERN = r"[\w']+|[^\w\s]"
MAX_VOCAB = 20000  # most frequent training tokens kept (plus <pad> and <unk>)
MIN_FREQ = 2  # tokens seen once in training read as <unk> (halves the vocabulary, rarely costs accuracy)
MAX_LEN_CAP = 200  # tokens; longer texts are truncated
MIN_LEN = 8  # never shorter than the widest convolution kernel
TEXT_COLUMNS = ("text", "label")


def read_text_source(source: str) -> tuple[list[str], list[str]]:
    """``--data`` -> (texts, labels): a .csv/.tsv with ``text`` and ``label`` columns, or a folder of
    ``<class>/*.txt`` files (one sample a file). DataError for anything unusable."""
    if not source:
        raise DataError(
            "the text task needs --data: a .csv/.tsv file with 'text' and 'label' columns, or a folder of <class>/*.txt"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"--data {source}: no such file or folder")
    if path.is_dir():
        return _read_folder(path, source)
    table = guess_table_file(path, source, allowed=("csv", "tsv"))
    if table is None:
        suffix = "".join(s.lower() for s in path.suffixes[-2:])
        raise DataError(f"--data {source}: the text task expects a .csv/.tsv file or a folder, not '{suffix}' "
                        f"(a table may be compressed: .gz, .bz2, .xz, .zst, or alone in a .zip)")
    return _read_table(table, source)


def _read_table(table: TableFile, source: str) -> tuple[list[str], list[str]]:
    import pandas as pd

    # A TSV is read without quoting (texts often contain '"'); a CSV uses standard CSV quoting.
    kw: dict[str, str | int] = {"sep": "\t", "quoting": csv.QUOTE_NONE} if table.fmt == "tsv" else {}
    label = f"--data {source}"
    try:
        check_table(table.path, table.compression, table.sep, label)
        frame = pd.read_csv(table.path, dtype=str, keep_default_na=False, compression=table.compression, **kw)
    except pd.errors.EmptyDataError:
        raise DataError(f"--data {source}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise DataError(f"--data {source}: cannot read it as a table ({reason})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in TEXT_COLUMNS:
        if col not in frame.columns:
            raise DataError(
                f"--data {source}: no '{col}' column (columns: {', '.join(frame.columns)}); "
                f"text data needs a 'text' and a 'label' column"
            )
    if len(frame) == 0:
        raise DataError(f"--data {source}: the table has no rows")
    check_fields(frame[list(TEXT_COLUMNS)], label)
    texts = [str(t) for t in frame["text"].tolist()]
    labels = [str(v).strip() for v in frame["label"].tolist()]
    return _drop_unusable(texts, labels, source)


def _read_folder(path: Path, source: str) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    files = [(f, sub.name) for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
             for f in sorted(sub.glob("*.txt"))]
    try:
        check_text_folder([f for f, _ in files], f"--data {source}")
        for f, label in files:
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
            labels.append(label)
    except OSError as exc:
        raise DataError(f"{exc.filename or source}: cannot read it ({exc.__class__.__name__})") from None
    if not texts:
        raise DataError(f"--data {source}: no <class>/*.txt files found in the folder")
    return _drop_unusable(texts, labels, source)


def _drop_unusable(texts: list[str], labels: list[str], source: str) -> tuple[list[str], list[str]]:
    """Rows with an empty text or an empty label teach nothing; drop them."""
    keep = [i for i, (t, y) in enumerate(zip(texts, labels, strict=True)) if t.strip() and y]
    if not keep:
        raise DataError(f"--data {source}: no row has both a text and a label")
    return [texts[i] for i in keep], [labels[i] for i in keep]


def tokenize(text: str, spec: PreprocessSpec | None = None, limit: int | None = None) -> list[str]:
    """Lowercased word and punctuation tokens ("It's good!" -> ["it's", "good", "!"]); with ``limit``,
    only the first ``limit`` tokens are found (a long text costs no more than a short one)."""
    pattern = (spec or {}).get("token_pattern", TOKEN_PATTERN)
    if (spec or {}).get("lowercase", True):
        text = text.lower()
    if limit is None:
        return re.findall(pattern, text)
    return [m.group() for m in itertools.islice(re.finditer(pattern, text), limit)]


def fit_text_spec(
    texts: list[str], max_vocab: int = MAX_VOCAB, min_freq: int = MIN_FREQ, max_len: int | None = None
) -> PreprocessSpec:
    """Vocabulary (most frequent first, ties alphabetical) and a fixed length (the 99th percentile
    of token counts, between MIN_LEN and MAX_LEN_CAP) from the training texts only."""
    base = {"kind": "text", "lowercase": True, "token_pattern": TOKEN_PATTERN}
    tokenized = [tokenize(t, base) for t in texts]
    counts = Counter(tok for toks in tokenized for tok in toks)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))[:max_vocab]
    if max_len is None:
        lengths = np.array([len(t) for t in tokenized] or [MIN_LEN])
        max_len = int(np.ceil(np.percentile(lengths, 99)))
    max_len = int(min(MAX_LEN_CAP, max(MIN_LEN, max_len)))
    return {**base, "max_len": max_len, "vocab": [PAD, UNK, *words], "input_dtype": "int64"}


def encode_texts(texts: list[object], spec: PreprocessSpec) -> np.ndarray:
    """Raw strings -> int64 token ids (N, max_len). DataError for a non-string or an empty string."""
    if not isinstance(texts, list) or not texts:
        raise DataError("no texts given")
    index = _vocab_index(spec["vocab"])
    length = int(spec["max_len"])
    unk = index.get(UNK, 1)
    out = np.zeros((len(texts), length), dtype=np.int64)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"text {i}: expected a string, got {type(text).__name__}")
        tokens = tokenize(text, spec, limit=length)
        if not tokens:
            raise DataError(f"text {i}: empty string (nothing to classify)")
        ids = [index.get(tok, unk) for tok in tokens]
        out[i, : len(ids)] = ids
    return out


_INDEX_CACHE: dict[int, tuple[list[str], dict[str, int]]] = {}


def _vocab_index(vocab: list[str]) -> dict[str, int]:
    """token -> id for a vocabulary list; cached per list object (the cache holds the list, so its
    id cannot be reused while cached) because serve encodes many small batches with one spec."""
    hit = _INDEX_CACHE.get(id(vocab))
    if hit is not None and hit[0] is vocab:
        return hit[1]
    index = {w: i for i, w in enumerate(vocab)}
    if len(_INDEX_CACHE) >= 8:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[id(vocab)] = (vocab, index)
    return index
