"""The bag-of-n-grams text family (``automl/models/ngram.py``): ONNX parity within 1e-5, bigram hashing
that is deterministic, order-aware and blind to padding, bounds on a forged arch, a 5-epoch search on a
tiny set that learns, and compress -> predict on one of its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.data.text import encode_texts
from automl.models import build_from_arch, check_arch_matches_weights
from automl.models.ngram import HASH_MOD, HASH_MUL, HASH_PRIME, MAX_BUCKETS, BagOfNgrams, bigram_bucket
from automl.tasks import DataConfig, get_task
from tests.tasks.test_text import make_text_tsv, make_texts

PARITY_TOL = 1e-5


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tsv = make_text_tsv(tmp_path_factory.mktemp("ngram") / "t.tsv")
    return get_task("text").load_data(DataConfig(source=str(tsv), seed=0))


def _arch(vocab: int, ngrams: int = 2, buckets: int = 97, dim: int = 8) -> dict[str, Any]:
    return {"family": "ngram", "vocab_size": vocab, "embed_dim": dim, "ngrams": ngrams,
            "buckets": buckets if ngrams == 2 else 0, "dropout": 0.5, "num_classes": 2}


@pytest.mark.parametrize("ngrams", [1, 2])
def test_onnx_matches_pytorch_within_1e5(ngrams: int, text_bundle: Any, tmp_path: Path) -> None:
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits

    task = get_task("text")
    torch.manual_seed(0)
    model = task.build_model({"model": "ngram", "ngrams": ngrams, "buckets": 1000, "embed_dim": 16},
                             text_bundle.meta).eval()
    with torch.no_grad():  # trained-looking weights: the initial ones are within +-1/dim
        model.embedding.weight.normal_()
    path = export_onnx(model, task.example_input(text_bundle.meta, 1), tmp_path / "m.onnx", {"automl.task": "text"})
    x = torch.cat([text_bundle.x_val, torch.zeros_like(text_bundle.x_val[:2])])  # and two texts of padding alone
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort_logits(session(path), x.numpy())
    assert got.shape == ref.shape == (len(x), 2)
    assert np.abs(got - ref).max() <= PARITY_TOL
    assert np.abs(ref[-1] - model.classifier.bias.detach().numpy()).max() == 0  # padding alone pools to zeros


def test_bigram_hash_is_deterministic_and_padding_and_batch_insensitive(text_bundle: Any) -> None:
    spec = text_bundle.meta["preprocess"]
    texts, _ = make_texts(40, seed=3)
    short, long = encode_texts(texts, {**spec, "max_len": 24}), encode_texts(texts, {**spec, "max_len": 60})
    assert (long[:, 24:] == 0).all() and (short != 0).sum() == (long != 0).sum()  # no text was cut at 24
    torch.manual_seed(0)
    model = BagOfNgrams(_arch(len(spec["vocab"]))).eval()
    with torch.no_grad():
        model.embedding.weight.normal_()
        a = model(torch.from_numpy(short))
        b = model(torch.from_numpy(long))  # the same texts followed by 36 more padding ids
        one = torch.cat([model(torch.from_numpy(long[i : i + 1])) for i in range(len(long))])
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(one, b, atol=1e-6)

    # the row of a bigram is its bucket (the universal hash of a * HASH_PRIME + b) after the vocabulary rows; the
    # batch is cut to its longest text, so the padding is not looked up at all
    vocab = len(spec["vocab"])
    seen: list[torch.Tensor] = []
    model.embedding.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    with torch.no_grad():
        model(torch.tensor([[5, 7, 0, 0]]))
    ids = seen[0][0].tolist()
    assert ids == [5, 7, vocab + (5 * HASH_PRIME + 7) % HASH_MOD * HASH_MUL % HASH_MOD % 97]
    # word order matters with bigrams only: "5 7" and "7 5" share their unigrams
    x = torch.tensor([[5, 7], [7, 5]])
    uni = BagOfNgrams(_arch(vocab, ngrams=1)).eval()
    with torch.no_grad():
        assert torch.equal(uni(x)[0], uni(x)[1]) and not torch.allclose(model(x)[0], model(x)[1])


def test_bigram_hash_spreads_frequent_pairs_and_never_overflows() -> None:
    """The bigrams of the 100 most frequent tokens (ids 2..101, the low ids) fill about as many of 20000
    buckets as random rows would (1 - e**-0.5 of them, 7869); ``(a * HASH_PRIME + b) mod 20000`` is
    ``(3a + b) mod 20000`` there and put all 10000 of them into 400 rows. The largest ids hash exactly as
    Python's unbounded integers do: no int64 product wraps."""
    ids = torch.arange(2, 102)
    a, b = ids.repeat_interleave(100), ids.repeat(100)
    assert len(torch.unique(bigram_bucket(a, b, 20_000))) > 7_000
    assert len(torch.unique((a * HASH_PRIME + b) % 20_000)) <= 400  # the old hash, for the record
    big = torch.tensor([2_000_000, 1_999_999, 3])
    got = bigram_bucket(big, big.flip(0), MAX_BUCKETS).tolist()
    want = [(x * HASH_PRIME + y) % HASH_MOD * HASH_MUL % HASH_MOD % MAX_BUCKETS
            for x, y in zip(big.tolist(), big.flip(0).tolist(), strict=True)]
    assert got == want and all(0 <= g < MAX_BUCKETS for g in got)


def test_a_forged_arch_cannot_ask_for_a_huge_table() -> None:
    from automl.exceptions import ArtifactError

    state = BagOfNgrams(_arch(50)).state_dict()
    check_arch_matches_weights(_arch(50), state)  # the honest arch passes
    with pytest.raises(ArtifactError, match="'buckets' is 2000001, the family builds"):
        check_arch_matches_weights(_arch(50, buckets=MAX_BUCKETS + 1), state)
    with pytest.raises(ArtifactError, match="embedding table of 2000050 x 4096 values is over the limit"):
        check_arch_matches_weights(_arch(50, buckets=MAX_BUCKETS, dim=4096), state)
    with pytest.raises(ArtifactError, match="buckets must be > 0 exactly when ngrams is 2"):
        build_from_arch({**_arch(50), "buckets": 0})


def _order_texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts whose class is the order of two words ("alpha beta" or "beta alpha") among filler words:
    the same unigrams in both classes, so only bigrams tell them apart."""
    rng = np.random.default_rng(seed)
    filler = ["the", "film", "is", "a", "story", "with", "and", "of", "it", "cast", "plot"]
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(filler, int(rng.integers(3, 8))))
        pair = "alpha beta" if i % 2 == 0 else "beta alpha"
        words.insert(int(rng.integers(0, len(words) + 1)), pair)
        texts.append(" ".join(words))
        labels.append("ab" if i % 2 == 0 else "ba")
    return texts, labels


@pytest.mark.parametrize(("ngrams", "learns"), [(1, False), (2, True)])
def test_search_trains_five_epochs_and_bigrams_learn_word_order(ngrams: int, learns: bool, tmp_path: Path) -> None:
    """A one-trial search of the family alone: 5 epochs (one pruner report each), and on texts whose
    class is a word order, bigrams learn it (test accuracy >= 0.85) where unigrams stay near chance."""
    import optuna

    from automl.artifacts import load_checkpoint
    from automl.study import SearchSettings, run_search

    texts, labels = _order_texts(400, seed=0)
    data = tmp_path / "order.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)))
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  model: ngram\n  ngrams: {ngrams}\n  buckets: 1000\n  embed_dim: 16\n"
                     "  dropout: 0.1\n  lr: 0.03\n  batch_size: 32\n  optimizer: adamw\n  weight_decay: 0.0001\n")
    res = run_search(SearchSettings(task="text", data=str(data), space=str(space), trials=1, epochs=5, seed=0,
                                    pruner="none", sampler="random", out=str(tmp_path / "runs"), device="cpu",
                                    study="ng"))
    (trial,) = optuna.load_study(study_name="ng", storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}").trials
    arch = load_checkpoint(res.best_pt)["arch"]
    assert arch["family"] == "ngram" and arch["ngrams"] == ngrams and len(trial.intermediate_values) == 5
    assert [r["name"] for r in res.leaderboard["rows"] if r["kind"] == "family"] == ["ngram"]  # not the default
    if learns:
        assert res.test_metric >= 0.85, res.test_metric
    else:
        assert res.test_metric <= 0.7, res.test_metric


def test_compress_then_predict_an_ngram_checkpoint(tmp_path: Path) -> None:
    """``automl compress`` on an ngram best.pt: pruning is skipped with the family's reason, fp32 and
    INT8 ONNX files are written (fp32 parity within 1e-5), and ``predict`` on them agrees with the .pt."""
    from typer.testing import CliRunner

    import cli
    from automl.models import get_model
    from tests._onnx_helpers import task_checkpoint

    tsv = make_text_tsv(tmp_path / "t.tsv", n=220)
    best = task_checkpoint("text", str(tsv), tmp_path / "best.pt",
                           {"model": "ngram", "ngrams": 2, "buckets": 500, "embed_dim": 16})
    out = tmp_path / "c"
    res = CliRunner().invoke(cli.app, ["compress", str(best), "--json", "--out", str(out), "--finetune-epochs", "0",
                                       "--max-drop", "100", "--warmup", "1", "--repeats", "2", "--threads", "1"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    report = json.loads(res.stdout)
    assert report["prune"]["skipped"] == get_model("ngram").prune_unsupported
    rows = {v["name"]: v for v in report["variants"]}
    assert {"fp32", "int8"} <= set(rows) and rows["fp32"]["parity_max_abs_diff"] <= PARITY_TOL
    texts = ["a great and moving film", "dull , bland and tedious", "the plot"]
    answers = {}
    for model in (best, out / "model.onnx", out / "model.int8.onnx"):
        got = CliRunner().invoke(cli.app, ["predict", str(model), *texts, "--json"])
        assert got.exit_code == 0, got.output
        answers[model.name] = json.loads(got.stdout)["predictions"]
    ref = answers["best.pt"]
    fp32 = answers["model.onnx"]
    assert [r["label"] for r in fp32] == [r["label"] for r in ref]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(fp32, ref, strict=True)) < 1e-5
    assert len(answers["model.int8.onnx"]) == len(texts)
