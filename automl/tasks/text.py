"""The text classification task: TextCNN or a bidirectional GRU over int64 token ids (N, max_len)."""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.data.splits import check_labels, train_val_test
from automl.tasks._base import DataBundle, DataConfig, Task
from automl.tasks._registry import register_task


@register_task("text")
class TextTask(Task):
    metric = "accuracy"
    direction = "maximize"
    description = "text classification with TextCNN or a bidirectional GRU (.csv/.tsv with text,label or <class>/*.txt)"
    default_model = "textcnn"

    def load_data(self, cfg: DataConfig) -> DataBundle:
        import torch

        from automl.data.text import encode_texts, fit_text_spec, read_text_source

        texts, labels = read_text_source(cfg.source)
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
        check_labels(y, classes, cfg.source)
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
        }
        return DataBundle.from_indices(x, y, (tr, va, te), meta)

    def example_input(self, meta: dict[str, Any], batch: int = 1) -> Any:
        """int64 token ids (batch, max_len): ``<unk>`` (1) everywhere, a valid non-padding input."""
        import torch

        return torch.ones((batch, *meta["input_shape"]), dtype=torch.int64)
