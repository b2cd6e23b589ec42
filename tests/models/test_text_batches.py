"""Fast text training: length-bucketed batches (``automl.train.epoch_batches``), TextCNN batches cut to
their longest text plus the widest kernel with the full-length logits, the packed GRU whose logits do
not depend on the padding, ONNX at the full ``max_len`` with the PyTorch outputs, and the fused AdamW."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.models import build_from_arch
from automl.train import TrainConfig, epoch_batches, fit, make_optimizer

MAX_LEN = 30
LENGTHS = [30, 1, 12, 29, 7, 18, 25, 3]  # one full row, one of a single token


def padded_ids(lengths: list[int], width: int = MAX_LEN, seed: int = 0, vocab: int = 50) -> torch.Tensor:
    """int64 ids (N, width): row i holds lengths[i] tokens in 1..vocab-1, then padding 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros((len(lengths), width), dtype=torch.int64)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randint(1, vocab, (n,), generator=g)
    return x


def textcnn(kernels: tuple[int, ...] = (2, 3, 5)) -> torch.nn.Module:
    torch.manual_seed(0)
    arch = {"family": "textcnn", "vocab_size": 50, "embed_dim": 12, "kernel_sizes": list(kernels),
            "filters": [6] * len(kernels), "dropout": 0.5, "num_classes": 3}
    return build_from_arch(arch).eval()


def gru(packed: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    arch = {"family": "gru", "vocab_size": 50, "embed_dim": 12, "hidden": 8, "layers": 1, "bidirectional": True,
            "dropout": 0.3, "num_classes": 3, **({"packed": True} if packed else {})}
    return build_from_arch(arch).eval()


def widths_seen(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """The logits of ``model`` on ``x`` and the sequence lengths its embedding was called with."""
    seen: list[int] = []
    handle = model.embedding.register_forward_pre_hook(lambda m, args: seen.append(int(args[0].shape[1])))
    try:
        with torch.no_grad():
            return model(x), seen
    finally:
        handle.remove()


def test_epoch_batches_plain_slices_and_sortish_buckets() -> None:
    n, bs = 1000, 32
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    plain = epoch_batches(perm, bs)
    assert [b.tolist() for b in plain] == [perm[i : i + bs].tolist() for i in range(0, n, bs)]
    keys = torch.randint(1, 60, (n,), generator=torch.Generator().manual_seed(2))
    bucketed = epoch_batches(perm, bs, keys, torch.Generator().manual_seed(3))
    # every sample once, the same batch sizes as plain slices
    assert sorted(torch.cat(bucketed).tolist()) == list(range(n))
    assert sorted(len(b) for b in bucketed) == sorted(len(b) for b in plain)

    def spread(batches: list[torch.Tensor]) -> float:
        return float(np.mean([int(keys[b].max() - keys[b].min()) for b in batches]))

    assert spread(bucketed) < spread(plain) / 5  # batches of similar length
    assert spread(plain) > 40
    again = epoch_batches(perm, bs, keys, torch.Generator().manual_seed(3))
    other = epoch_batches(perm, bs, keys, torch.Generator().manual_seed(4))
    assert [b.tolist() for b in again] == [b.tolist() for b in bucketed]  # reproducible from the generator
    assert [b.tolist() for b in other] != [b.tolist() for b in bucketed]  # shuffled batch order
    # the size order is not the batch order (a sorted epoch would bias the schedule)
    firsts = [int(keys[b].min()) for b in bucketed]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)


@pytest.mark.parametrize("kernels", [(2, 3, 5), (3,), (4, 7)])
def test_textcnn_cut_batch_gives_the_full_length_logits(monkeypatch: pytest.MonkeyPatch, kernels: tuple) -> None:
    import automl.models.textcnn as mod

    model = textcnn(kernels)
    x = padded_ids([12, 1, 7, 3])  # longest 12: the batch is cut to 12 + widest kernel
    x[0, 4] = 0  # a padding id inside a text changes nothing
    got, seen = widths_seen(model, x)
    assert seen == [min(MAX_LEN, -(-(12 + max(kernels)) // 8) * 8)]  # rounded up to a multiple of 8
    monkeypatch.setattr(mod, "may_trim", lambda: False)
    ref, seen_full = widths_seen(model, x)
    assert seen_full == [MAX_LEN]
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    # each row alone (cut to its own length) gives its row of the batch, a full row is never cut
    monkeypatch.undo()
    for i in range(len(x)):
        torch.testing.assert_close(widths_seen(model, x[i : i + 1])[0], ref[i : i + 1], rtol=0, atol=1e-5)
    full = padded_ids([MAX_LEN, 2])
    assert widths_seen(model, full)[1] == [MAX_LEN]


def test_packed_gru_logits_do_not_depend_on_padding() -> None:
    model = gru()
    x = padded_ids(LENGTHS)
    ref, seen = widths_seen(model, x)
    assert seen == [max(LENGTHS)]
    wider = torch.cat([x, torch.zeros((len(x), 17), dtype=torch.int64)], dim=1)
    torch.testing.assert_close(widths_seen(model, wider)[0], ref, rtol=0, atol=1e-5)
    for i, n in enumerate(LENGTHS):  # each row alone, without any padding
        alone, seen = widths_seen(model, x[i : i + 1, :n])
        assert seen == [n]
        torch.testing.assert_close(alone, ref[i : i + 1], rtol=0, atol=1e-5)
    # an older model file (no 'packed') still reads the padding as it was trained to: its logits move
    old = gru(packed=False)
    with torch.no_grad():
        assert not hasattr(old, "packed") or old.packed is False
        assert (old(wider) - old(x)).abs().max() > 1e-4
        assert old.batch_size_key(x) is None
    # a row of padding alone still gives finite logits
    assert torch.isfinite(widths_seen(model, torch.zeros((2, MAX_LEN), dtype=torch.int64))[0]).all()


@pytest.mark.parametrize("family", ["textcnn", "gru"])
def test_onnx_at_full_length_matches_pytorch_on_padded_batches(tmp_path: Path, family: str) -> None:
    """Exported on the task's example input (full max_len), the graph keeps the full length, takes any
    batch size and gives PyTorch's eval logits for padded rows of every length."""
    import onnx

    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session

    model = textcnn() if family == "textcnn" else gru()
    path = export_onnx(model, torch.ones((1, MAX_LEN), dtype=torch.int64), tmp_path / f"{family}.onnx", {})
    (inp,) = onnx.load(str(path)).graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", MAX_LEN]
    sess = session(path, ["CPUExecutionProvider"])
    for x in (padded_ids(LENGTHS, seed=5), padded_ids([9], seed=6)):
        got = sess.run(["logits"], {"input": x.numpy()})[0]
        with torch.no_grad():
            ref = model(x).numpy()
        assert got.shape == (len(x), 3) and np.abs(got - ref).max() < 1e-5


def test_fit_trains_text_on_length_buckets(tmp_path: Path) -> None:
    """fit() groups a text model's batches by length: most training batches are cut well below
    max_len, and the model still learns the synthetic sentiment words."""
    from automl.tasks import DataConfig, get_task
    from tests.tasks.test_text import FILLER, NEGATIVE, POSITIVE

    rng = np.random.default_rng(0)
    rows = []
    for i in range(300):  # 2 to 40 filler words around one sentiment word: lengths spread widely
        words = list(rng.choice(FILLER, int(rng.integers(2, 41))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POSITIVE if i % 2 else NEGATIVE)))
        rows.append(f"{' '.join(words)}\t{'pos' if i % 2 else 'neg'}\n")
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "".join(rows))
    task = get_task("text")
    b = task.load_data(DataConfig(source=str(tmp_path / "t.tsv"), seed=0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: a second thread only waits (badly so on a shared machine)
    try:
        _fit_both(task, b)
    finally:
        torch.set_num_threads(threads)


def _fit_both(task: Any, b: Any) -> None:
    max_len = b.x_train.shape[1]
    for params in ({"model": "textcnn", "embed_dim": 16, "filters": 16, "kernel_sizes": "2-3"},
                   {"model": "gru", "embed_dim": 16, "hidden": 16}):
        torch.manual_seed(0)
        model = task.build_model({**params, "dropout": 0.2}, b.meta)
        widths: list[int] = []
        model.embedding.register_forward_pre_hook(
            lambda m, args, seen=widths: seen.append(int(args[0].shape[1])) if m.training else None)
        cfg = TrainConfig(epochs=4, lr=0.01, batch_size=16)
        res = fit(model, b.x_train, b.y_train, b.x_val, b.y_val, cfg, task.loss_fn(), task.metric_fn())
        real = model.batch_size_key(b.x_train)
        assert len(widths) == 4 * -(-len(b.x_train) // 16)
        assert np.mean(widths) < 0.8 * max_len and max(widths) <= max_len, (params, np.mean(widths), max_len)
        assert int(real.max()) <= max_len and res.val_metric >= 0.7, (params, res.history)  # chance: 0.5


def test_adam_and_adamw_use_the_fused_step_on_cpu() -> None:
    model = textcnn()
    for name in ("adam", "adamw"):
        opt = make_optimizer(model, TrainConfig(optimizer=name))
        assert opt.defaults["fused"] is True, name
    sgd: Any = make_optimizer(model, TrainConfig(optimizer="sgd"))
    assert "fused" not in sgd.defaults or not sgd.defaults["fused"]
