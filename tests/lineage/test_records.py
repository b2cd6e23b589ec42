"""Lineage records without a search: the git commit read from ``.git`` files (no process), the steps
of a pruned checkpoint, and the data fingerprint."""

from __future__ import annotations

from pathlib import Path

import torch

from automl.lineage import data_fingerprint, git_commit, versions

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_git_commit_from_a_checkout_a_worktree_and_packed_refs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(SHA + "\n")
    assert git_commit(repo) == SHA
    (repo / ".git" / "refs" / "heads" / "main").unlink()  # after `git gc`: only in packed-refs
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA} refs/heads/main\n")
    assert git_commit(repo) == SHA
    wt = tmp_path / "wt"  # a worktree: .git is a file naming its git dir, whose refs live in the main repo
    gitdir = repo / ".git" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    (gitdir / "HEAD").write_text("ref: refs/heads/main\n")
    (gitdir / "commondir").write_text("../..\n")
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {gitdir}\n")
    assert git_commit(wt) == SHA
    (gitdir / "HEAD").write_text(SHA[::-1] + "\n")  # a detached HEAD
    assert git_commit(wt) == SHA[::-1]
    assert git_commit(tmp_path / "nowhere") is None
    assert set(versions()) == {"python", "torch", "onnx", "onnxruntime", "optuna", "automl", "git_commit"}


def test_pruned_checkpoint_steps_name_fine_tune_or_distil() -> None:
    from compress.context import CompressSettings
    from compress.lineage import prune_steps

    plain = prune_steps(CompressSettings(checkpoint="b.pt", prune_ratio=0.3, finetune_epochs=2), {}, {})
    assert [s["step"] for s in plain] == ["prune", "fine-tune"] and plain[1]["settings"]["epochs"] == 2
    distil = prune_steps(CompressSettings(checkpoint="b.pt", distill=True, distill_temperature=2.0), {}, {})
    assert [s["step"] for s in distil] == ["prune", "distil"] and distil[1]["settings"]["temperature"] == 2.0
    skipped = prune_steps(CompressSettings(checkpoint="b.pt", distill=True), {}, {"distill_skipped": "regression"})
    assert skipped[1]["step"] == "fine-tune"
    assert [s["step"] for s in prune_steps(CompressSettings(checkpoint="b.pt", finetune_epochs=0), {}, {})] == ["prune"]


def test_data_fingerprint_follows_the_rows() -> None:
    from automl.data.bundle import DataBundle

    def bundle(x0: float) -> DataBundle:
        x = torch.zeros(6, 2)
        x[0, 0] = x0
        y = torch.tensor([0, 1, 0, 1, 0, 1])
        return DataBundle(x[:2], y[:2], x[2:4], y[2:4], x[4:], y[4:], meta={"classes": ["a", "b"]})

    cfg = {"source": "https://u:pw@example.com/t.csv", "seed": 3, "val_fraction": 0.2}
    a, b, c = data_fingerprint(bundle(0.0), cfg), data_fingerprint(bundle(0.0), cfg), data_fingerprint(bundle(1.0), cfg)
    assert a["rows_sha256"] == b["rows_sha256"] != c["rows_sha256"]
    assert a["sizes"] == {"train": 2, "val": 2, "test": 2} and a["classes"] == ["a", "b"] and a["seed"] == 3
    assert a["source"] == "https://u:***@example.com/t.csv"
