"""The text classification task: a bag of n-grams, TextCNN or a bidirectional GRU over int64 token ids
(N, max_len)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from automl.data.bundle import DataBundle, DataConfig, InputLimits
from automl.data.splits import check_labels, train_val, train_val_test
from automl.exceptions import DataError, InputError
from automl.tasks._base import Reference, Task, spec_int, spec_list
from automl.tasks._metrics import proba_columns
from automl.tasks._registry import register_task

if TYPE_CHECKING:
    import torch

#: token patterns a model file may name: a user regex could backtrack catastrophically (``(a|aa)+$``)
#: and hang the server, so only these linear-time patterns are accepted
SAFE_TOKEN_PATTERNS = (r"[\w']+|[^\w\s]", r"\w+", r"[\w']+", r"\S+", r"\w+|[^\w\s]")
DEFAULT_MAX_CHARS = 100_000  # characters of one text sent to serve


@register_task("text")
class TextTask(Task):
    metric = "accuracy"
    direction = "maximize"
    description = ("text classification with a bag of n-grams, TextCNN or a bidirectional GRU (.csv/.tsv with "
                   "text,label or <class>/*.txt)")
    default_model = "textcnn"
    # With one-cycle schedules TextCNN and GRU peak at epochs 3-5 on Movie Review (0.76-0.77 test
    # accuracy) and overfit by 10 (0.73-0.75); five epochs also let a CPU budget run many more trials.
    default_epochs = 5
    cross_validation = True
    test_data_unsupported = None
    has_reference = True

    def check_source(self, source: str, target: str | None) -> None:
        """An existing file or folder, within the data bounds."""
        from pathlib import Path

        from automl.data.bounds import check_data_file

        if not source:
            return
        if not Path(source).expanduser().exists():
            raise DataError(f"--data {source}: no such file or folder")
        check_data_file(source)  # sizes, lines, fields: a hostile file fails before torch is imported

    def reference_model(self, bundle: DataBundle) -> Reference:
        """TF-IDF over the task's own tokens (unigrams and bigrams of the vocabulary ids) + logistic
        regression."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        def rows(x: torch.Tensor) -> list[np.ndarray]:
            return list(x.detach().cpu().numpy())

        vec = TfidfVectorizer(analyzer=_ngrams, min_df=1, sublinear_tf=True)
        x_tr = vec.fit_transform(rows(bundle.x_train))
        model = LogisticRegression(max_iter=2000, C=4.0)
        model.fit(x_tr, bundle.y_train.detach().cpu().numpy())
        n = int(bundle.meta["num_classes"])
        return ("TF-IDF (token 1-2-grams) + logistic regression",
                lambda x: proba_columns(model.predict_proba(vec.transform(rows(x))), model.classes_, n))

    def load_data(self, cfg: DataConfig) -> DataBundle:
        import torch

        from automl.data.text import encode_texts, fit_text_spec, read_text_source

        texts, labels = read_text_source(cfg.source)
        n_train = len(texts)
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        if cfg.test_source:  # the official test texts follow the training file's
            from automl.data.splits import test_file_error

            try:
                test_texts, test_labels = read_text_source(cfg.test_source)
            except DataError as exc:
                raise test_file_error(exc, cfg.test_source) from None
            unseen = next((v for v in test_labels if v not in index), None)
            if unseen is not None:
                raise DataError(f"--test-data {cfg.test_source}: label {unseen[:40]!r} is not in the training "
                                f"file --data {cfg.source}")
            texts, labels = texts + test_texts, labels + test_labels
        y = np.array([index[v] for v in labels], dtype=np.int64)
        check_labels(y[:n_train], classes, cfg.source)
        if cfg.test_source:
            tr, va = train_val(y[:n_train], cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.source, "texts")
            te = np.arange(n_train, len(y), dtype=np.int64)
        else:
            tr, va, te = train_val_test(y, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.source, "texts")
        # Tokenizer vocabulary and length come from the training split only.
        spec = fit_text_spec([texts[i] for i in tr])

        def x(idx: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(encode_texts([texts[i] for i in idx], spec))

        meta = {
            "task": self.name,
            "input_shape": [int(spec["max_len"])],
            "input_dtype": "int64",
            "num_classes": len(classes),
            "classes": classes,
            "preprocess": spec,
            "notes": [f"test split: the {len(te)} texts of --test-data {cfg.test_source}; --data {cfg.source} is "
                      f"split into {len(tr)} training and {len(va)} validation texts"] if cfg.test_source else [],
        }
        return DataBundle.from_indices(x, y, (tr, va, te), meta)

    # --- in-memory data, the model card -----------------------------------------------------------
    memory_table_format = "csv"  # columns text and label, strings

    def in_memory_table(self, data: Any, target: str | None) -> tuple[Any, str | None]:
        """A DataFrame with a ``text`` column and the label column ``target``, or (texts, labels)."""
        from automl.tasks._frames import text_table

        return text_table(data, target)

    def card_pipeline_tag(self, data: dict[str, Any]) -> str:
        return "text-classification"

    # --- raw inputs -------------------------------------------------------------------------------
    raw_json_type = str
    json_hint = "strings or lists of token ids"

    def python_inputs(self, data: Any, spec: dict[str, Any]) -> list[Any]:
        """A string is a text, unless it names an existing file (read as ``automl predict`` reads it)."""
        from pathlib import Path

        if isinstance(data, str) and not Path(data).is_file():
            return [data]
        return super().python_inputs(data, spec)

    def read_inputs(self, items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """``.txt`` files (one sample a non-empty line), ``.csv``/``.tsv``/``.parquet`` files with a
        ``text`` column, ``-`` for lines on stdin, or the text itself."""
        import sys
        from pathlib import Path

        from automl.data.preprocess import TABLE_FILES, read_input_table

        names: list[str] = []
        raw: list[Any] = []

        def add_lines(lines: list[str], source: str) -> None:
            for i, line in enumerate(lines, 1):
                if line.strip():
                    names.append(f"{source}:{i}")
                    raw.append(line.rstrip("\r\n"))

        for item in items:
            p = Path(item)
            if item == "-":
                add_lines(sys.stdin.read().splitlines(), "stdin")
            elif p.is_file() and p.suffix.lower() in TABLE_FILES:
                frame = read_input_table(p)
                if "text" not in frame.columns:
                    found = ", ".join(map(str, frame.columns))
                    raise DataError(f"{item}: a text table needs a 'text' column (found: {found})")
                names += [f"{p.name}:{i + 1}" for i in range(len(frame))]
                raw += [str(t) for t in frame["text"].tolist()]
            elif p.is_file():
                try:
                    add_lines(p.read_text(encoding="utf-8").splitlines(), p.name)
                except UnicodeDecodeError:
                    raise DataError(f"{item}: not a UTF-8 text file") from None
            elif p.suffix.lower() in (".txt", *TABLE_FILES) and " " not in item:
                raise DataError(f"{item}: file not found "
                                "(to predict this text itself, add a space or quote a sentence)")
            else:
                names.append(item if len(item) <= 40 else item[:37] + "...")
                raw.append(item)
        return names, raw

    def encode_json(self, inputs: list[Any], spec: dict[str, Any], options: dict[str, Any],
                    limits: InputLimits) -> np.ndarray | None:
        """Strings, each at most ``limits.max_text_chars`` characters, -> token ids; None for lists
        (token ids, checked by shape); InputError for a sample that is neither (a bare number)."""
        for i, r in enumerate(inputs):
            if not isinstance(r, (str, list)):
                raise InputError(f"sample {i}: expected a string (or a list of {spec.get('max_len')} token ids), "
                                 f"got {type(r).__name__}", "wrong_type")
        if not inputs or not all(isinstance(r, str) for r in inputs):
            return None
        cap = limits.max_text_chars or DEFAULT_MAX_CHARS
        for i, text in enumerate(inputs):
            if len(text) > cap:
                raise InputError(f"text {i}: {len(text)} characters is over the limit of {cap} "
                                 f"(only the first {spec['max_len']} tokens are read anyway)", "text_too_long")
        return self.encode_inputs(inputs, spec)

    def validate_spec(self, spec: dict[str, Any]) -> None:
        spec_int(spec, "max_len", 1, 10_000)
        vocab = spec_list(spec, "vocab", str, 2, 2_000_000)
        if any(len(w) > 1000 for w in vocab):
            raise DataError("preprocess.vocab must hold tokens of at most 1000 characters")
        if not isinstance(spec.get("lowercase", True), bool):
            raise DataError(f"preprocess.lowercase must be true or false, got {str(spec.get('lowercase'))[:40]}")
        pattern = spec.get("token_pattern", SAFE_TOKEN_PATTERNS[0])
        if pattern not in SAFE_TOKEN_PATTERNS:
            raise DataError(f"preprocess.token_pattern {str(pattern)[:60]!r} is not one of the safe patterns "
                            f"({', '.join(SAFE_TOKEN_PATTERNS)})")

    def describe_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "text", "max_len": spec["max_len"], "vocab_size": len(spec["vocab"]),
                "lowercase": spec.get("lowercase", True), "token_pattern": spec.get("token_pattern")}

    def encode_inputs(self, raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
        """Strings -> int64 token ids (N, max_len)."""
        from automl.data.text import encode_texts

        return encode_texts(raw, spec)

    def example_input(self, meta: dict[str, Any], batch: int = 1) -> torch.Tensor:
        """int64 token ids (batch, max_len): ``<unk>`` (1) everywhere, a valid non-padding input."""
        import torch

        return torch.ones((batch, *meta["input_shape"]), dtype=torch.int64)


def _ngrams(row: np.ndarray) -> list[str]:
    """The token ids of one encoded text (padding dropped) and their bigrams, as TF-IDF terms."""
    ids = [str(int(t)) for t in row if t > 0]
    return ids + [f"{a} {b}" for a, b in zip(ids, ids[1:], strict=False)]
