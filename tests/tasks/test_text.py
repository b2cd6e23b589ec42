"""The text task: reading (TSV, CSV, folders), the tokenizer and vocabulary fitted on the training
split, raw strings, both models' ONNX parity (int64 input), and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from automl.data.text import encode_texts, fit_text_spec, read_text_source, tokenize
from automl.exceptions import DataError
from automl.runtime.inference import raw_to_model_input
from automl.tasks import DataConfig, get_task

POSITIVE = ["great", "wonderful", "moving", "funny", "brilliant", "charming"]
NEGATIVE = ["boring", "dull", "awful", "tedious", "clumsy", "bland"]
FILLER = ["the", "film", "is", "a", "story", "with", "and", "of", "it", "'s", "cast", "plot", ",", "."]


def make_texts(n: int = 300, seed: int = 0) -> tuple[list[str], list[str]]:
    """Short sentences whose class is given by one to three sentiment words among filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = list(rng.choice(FILLER, int(rng.integers(4, 12))))
        for _ in range(int(rng.integers(1, 4))):
            word = str(rng.choice(POSITIVE if label == "pos" else NEGATIVE))
            words.insert(int(rng.integers(0, len(words) + 1)), word)
        texts.append(" ".join(words).capitalize())
        labels.append(label)
    return texts, labels


def make_text_tsv(path: Path, n: int = 300, seed: int = 0) -> Path:
    texts, labels = make_texts(n, seed)
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)))
    return path


def test_tokenizer_and_vocabulary_from_training_split(tmp_path: Path) -> None:
    assert tokenize('It\'s "GREAT", isn\'t it?') == ["it's", '"', "great", '"', ",", "isn't", "it", "?"]
    spec = fit_text_spec(["a b b c", "b c"], min_freq=1, max_len=3)
    assert spec["vocab"][:2] == ["<pad>", "<unk>"] and spec["vocab"][2:] == ["b", "c", "a"]
    assert fit_text_spec(["a b b c", "b c"], min_freq=2)["vocab"] == ["<pad>", "<unk>", "b", "c"]
    assert fit_text_spec(["a"] * 3, max_vocab=0)["max_len"] == 8  # never shorter than the widest kernel
    x = encode_texts(["B a zzz", "c c c c c"], {**spec, "max_len": 4})
    assert x.dtype == np.int64 and x.tolist() == [[2, 4, 1, 0], [3, 3, 3, 3]]  # unk, pad, truncation
    task = get_task("text")
    bundle = task.load_data(DataConfig(source=str(make_text_tsv(tmp_path / "t.tsv")), seed=0))
    spec = bundle.meta["preprocess"]
    assert spec["kind"] == "text" and bundle.x_train.dtype == torch.int64
    assert bundle.x_train.shape[1] == spec["max_len"] == bundle.meta["input_shape"][0]
    texts, _ = make_texts()
    # the vocabulary holds only tokens of the training split (here every word occurs there too)
    train_tokens = {tok for t in texts for tok in tokenize(t)}
    assert set(spec["vocab"][2:]) <= train_tokens and bundle.meta["classes"] == ["neg", "pos"]


def test_sources_tsv_csv_and_folder(tmp_path: Path) -> None:
    tsv = tmp_path / "q.tsv"
    tsv.write_text('text\tlabel\nthe "best" film\tpos\n\tneg\nawful , awful\tneg\n')
    # a TSV is read without quoting; a row with an empty text is dropped
    assert read_text_source(str(tsv)) == (['the "best" film', "awful , awful"], ["pos", "neg"])
    csv = tmp_path / "q.csv"
    csv.write_text('label,text\npos,"good, really"\nneg,bad\n')
    assert read_text_source(str(csv)) == (["good, really", "bad"], ["pos", "neg"])
    for label, text in [("pos", "fine"), ("neg", "poor"), ("neg", "weak")]:
        (tmp_path / "f" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "f" / label / f"{text}.txt").write_text(text)
    assert read_text_source(str(tmp_path / "f")) == (["poor", "weak", "fine"], ["neg", "neg", "pos"])


@pytest.mark.parametrize("model", ["textcnn", "gru"])
def test_onnx_int64_and_raw_strings_match_pytorch(tmp_path: Path, model: str) -> None:
    """Both models export with an int64 ``input``; ONNX Runtime matches PyTorch within 1e-4, and raw
    strings through raw_to_model_input give the training-pipeline tensors and the same predictions."""
    from automl.runtime.export import export_onnx
    from automl.runtime.onnx_meta import metadata_from_checkpoint, read_metadata
    from automl.runtime.ort import make_session as session

    task = get_task("text")
    bundle = task.load_data(DataConfig(source=str(make_text_tsv(tmp_path / "t.tsv")), seed=0))
    torch.manual_seed(0)
    params = {"model": model, "embed_dim": 16, "filters": 8, "kernel_sizes": "2-3-4", "hidden": 8, "dropout": 0.5}
    net = task.build_model(params, bundle.meta).eval()
    ckpt = {"task": "text", "preprocess": {**bundle.meta["preprocess"], "classes": bundle.meta["classes"]},
            "metrics": {"metric": "accuracy"}}
    path = export_onnx(net, task.example_input(bundle.meta, 1), tmp_path / f"{model}.onnx",
                       metadata_from_checkpoint(ckpt))
    sess = session(path, ["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "input" and inp.type == "tensor(int64)"
    texts, _ = make_texts()
    x_raw = raw_to_model_input(texts, read_metadata(path)["preprocess"])
    got = sess.run(["logits"], {"input": x_raw})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x_raw)).numpy()
    assert got.shape == (len(texts), 2) and np.max(np.abs(got - ref)) < 1e-4
    # raw strings encode exactly like the training pipeline (each test row is some raw text's row)
    rows = {tuple(r): i for i, r in enumerate(x_raw.tolist())}
    idx = [rows[tuple(r)] for r in bundle.x_test.tolist()]
    with torch.no_grad():
        np.testing.assert_allclose(got[idx], net(bundle.x_test).numpy(), atol=1e-4)


def test_bad_strings_are_data_errors() -> None:
    spec = fit_text_spec(["good film", "bad film"])
    with pytest.raises(DataError, match="text 1: empty string"):
        raw_to_model_input(["fine", "   "], spec)
    with pytest.raises(DataError, match="text 0: expected a string, got int"):
        encode_texts([3], spec)
    with pytest.raises(DataError, match="no inputs"):
        raw_to_model_input([], spec)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nolabel.tsv", "text\nsome words\nmore words\n", "no 'label' column (columns: text)"),
        ("notext.csv", "review,label\nok,pos\n", "no 'text' column"),
        ("empty.tsv", "text\tlabel\n", "the table has no rows"),
        ("one.tsv", "text\tlabel\ngood\tpos\nfine\tpos\n", "only one class ('pos')"),
        ("data.json", "{}", "expects a .csv/.tsv file or a folder"),
    ],
    ids=["no-label-column", "no-text-column", "no-rows", "one-class", "wrong-type"],
)
def test_bad_text_data_gives_one_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    from cli import app

    path = tmp_path / name
    path.write_text(content)
    result = CliRunner().invoke(app, ["search", "--task", "text", "--data", str(path), "--trials", "1", "--epochs", "1",
                                      "--out", str(tmp_path / "runs"), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output, result.stderr
    error = result.stderr[result.stderr.index("error:"):].strip()  # after any progress display
    assert message in error and len(error.splitlines()) == 1, error
