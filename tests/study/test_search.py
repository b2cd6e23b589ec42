"""End-to-end search on built-in digits and on image folders; best.pt contract; resume."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

import automl
import cli
from automl.artifacts import load_checkpoint
from automl.study import SearchSettings, run_search
from automl.tasks import DataConfig, get_task
from automl.train import evaluate
from tests._images import make_image_folder


def test_best_pt_contract(digits_run: dict, digits_best_pt: Path) -> None:
    ckpt = torch.load(digits_best_pt, map_location="cpu", weights_only=True)
    for key in ("format_version", "task", "arch", "state_dict", "preprocess", "data", "metrics", "study",
                "trial", "versions"):
        assert key in ckpt, key
    assert ckpt["task"] == "image" and ckpt["study"] == digits_run["study"]
    assert ckpt["trial"] == digits_run["best_trial"]
    assert ckpt["preprocess"]["size"] == [8, 8] and len(ckpt["preprocess"]["classes"]) == 10
    assert set(ckpt["versions"]) == {"torch", "optuna", "automl"}
    best_json = json.loads(Path(digits_run["best_json"]).read_text())
    assert best_json["metrics"]["test_accuracy"] == ckpt["metrics"]["test_accuracy"] == digits_run["test_accuracy"]
    assert digits_run["test_accuracy"] >= 0.85
    # the stored test accuracy is what the rebuilt model really scores on the recorded test split
    model = automl.load_model(digits_best_pt)
    assert not model.training
    task = get_task("image")
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    _, test_acc = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
    assert test_acc == pytest.approx(ckpt["metrics"]["test_accuracy"], abs=1e-6)
    # the best trial's weights are kept, and the other ensemble candidates' (automl.search.ensemble), each
    # beside its validation predictions
    trials = digits_best_pt.parent / "trials"
    kept = sorted(p.name for p in trials.glob("*.pt"))
    assert f"trial-{digits_run['best_trial']}.pt" in kept
    assert all((trials / n.replace(".pt", ".val.npy")).is_file() for n in kept)


def test_cli_digits_reaches_95_and_prunes(tmp_path: Path) -> None:
    """Done-when 2: --trials 8 --epochs 8 --json on digits: test accuracy >= 0.95, a trial pruned."""
    # In-process (the same command, without a second interpreter to import torch into).
    proc = CliRunner().invoke(cli.app, ["search", "--task", "image", "--trials", "8", "--epochs", "8", "--json",
                                        "--out", str(tmp_path)])
    assert proc.exit_code == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert out["test_accuracy"] >= 0.95
    assert out["n_pruned"] >= 1
    assert out["n_complete"] + out["n_pruned"] + out["n_failed"] == out["n_trials"] == 8
    assert Path(out["best_pt"]).is_file()
    study = optuna.load_study(study_name=out["study"], storage=f"sqlite:///{tmp_path / 'automl.db'}")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all("trial pruner stopped it after epoch" in t.user_attrs["prune_reason"] for t in pruned)
    assert all(t.user_attrs["pruned_at_epoch"] == t.user_attrs["epochs"] < 8 for t in pruned)


def test_same_study_twice_adds_trials(tmp_path: Path) -> None:
    """Done-when 4: running the same --study twice against one storage gives the sum of the trials."""
    kw = dict(task="image", trials=2, epochs=1, pruner="none", out=str(tmp_path), study="resume-me", device="cpu")
    first = run_search(SearchSettings(**kw))
    second = run_search(SearchSettings(**kw, seed=0))
    assert first.counts["total"] == 2 and second.counts["total"] == 4
    assert first.study == second.study == "resume-me"
    study = optuna.load_study(study_name="resume-me", storage=first.storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert load_checkpoint(second.best_pt)["trial"] == study.best_trial.number


def test_resume_with_other_data_is_refused(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=8, size=8)
    kw = dict(task="image", trials=1, epochs=1, pruner="none", out=str(tmp_path), study="s1", device="cpu")
    run_search(SearchSettings(**kw))
    with pytest.raises(automl.ConfigError, match="study 's1' was created with data="):
        run_search(SearchSettings(**kw, data=str(folder)))


@pytest.mark.parametrize("split", [True, False])
def test_image_folder_search(tmp_path: Path, split: bool) -> None:
    """Done-when 3 (small): an image folder, with train/test or class folders alone, writes best.pt."""
    folder = make_image_folder(tmp_path / "imgs", classes=3, per_class=24, size=12, split=split)
    res = run_search(SearchSettings(task="image", data=str(folder), trials=2, epochs=3, pruner="none",
                                    out=str(tmp_path / "runs"), device="cpu"))
    ckpt = load_checkpoint(res.best_pt)
    assert ckpt["preprocess"]["classes"] == ["class0", "class1", "class2"]
    assert ckpt["preprocess"]["channels"] == 3 and ckpt["preprocess"]["size"] == [12, 12]
    sizes = ckpt["metrics"]["sizes"]
    if split:
        assert sizes["test"] == 3 * 6  # the folder's own test split is used as is
    else:
        assert sizes["train"] + sizes["val"] + sizes["test"] == 72
    assert res.test_metric >= 0.6  # the bar position is easy to learn


def test_grey_folder_and_resize(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "g", classes=2, per_class=10, size=10, mode="L")
    bundle = get_task("image").load_data(DataConfig(source=str(folder), image_size=6))
    assert tuple(bundle.x_train.shape[1:]) == (1, 6, 6)
    # normalisation statistics come from the training split: its mean is ~0 and std ~1 per channel
    assert abs(float(bundle.x_train.mean())) < 1e-4
    assert float(bundle.x_train.std()) == pytest.approx(1.0, abs=0.01)


def test_split_is_seeded_and_disjoint() -> None:
    task = get_task("image")
    a = task.load_data(DataConfig(source="digits", seed=3))
    b = task.load_data(DataConfig(source="digits", seed=3))
    c = task.load_data(DataConfig(source="digits", seed=4))
    assert torch.equal(a.x_val, b.x_val) and not torch.equal(a.x_val, c.x_val)
    assert sum(a.sizes().values()) == 1797
    rows = {tuple(r.tolist()) for r in a.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in rows for r in a.x_test.flatten(1)[:50])


def test_unreadable_data_creates_no_study(tmp_path: Path) -> None:
    """The data loads before the study is created: a failure leaves no empty study in the storage."""
    from automl.exceptions import DataError
    from automl.study import open_storage, study_names

    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\ngood\tpos\nfine\tpos\n")  # one class: refused when the data loads
    with pytest.raises(DataError, match="only one class"):
        run_search(SearchSettings(task="text", data=str(bad), trials=1, epochs=1, out=str(tmp_path / "runs"),
                                  device="cpu"))
    db = tmp_path / "runs" / "automl.db"
    assert not db.exists() or study_names(open_storage(f"sqlite:///{db}")) == []


def test_every_model_family_gets_a_first_trial(tmp_path: Path) -> None:
    """A new study starts with one trial per family of the space, in the space's order (the bag of
    n-grams, the cheapest, first), so a short budget still tries each; a resumed study enqueues nothing
    again."""
    rows = ["text\tlabel"] + [f"good fine film {i}\tpos" if i % 2 else f"bad dull film {i}\tneg" for i in range(80)]
    data = tmp_path / "t.tsv"
    data.write_text("\n".join(rows) + "\n")
    settings = SearchSettings(task="text", data=str(data), trials=3, epochs=1, out=str(tmp_path / "runs"),
                              device="cpu", pruner="none", study="fam")
    run_search(settings)
    study = optuna.load_study(study_name="fam", storage=f"sqlite:///{tmp_path / 'runs' / 'automl.db'}")
    assert [t.params["model"] for t in study.trials] == ["ngram", "textcnn", "gru"]
    run_search(settings)  # resumed: sampled, not enqueued again
    assert len(study.trials) == 6 and all(not t.system_attrs.get("fixed_params") for t in study.trials[3:])
