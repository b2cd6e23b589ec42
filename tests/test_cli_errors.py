"""Bad input ends with one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import automl
from tests._images import make_image_folder

AUTOML = [sys.executable, "-c", "import cli; cli.main()"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*AUTOML, *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:"), err
    assert fragment in err, err


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    one = root / "one" / "cat"
    one.mkdir(parents=True)
    make_image_folder(root / "tmp1", classes=1, per_class=3, size=8, split=False)
    for f in (root / "tmp1" / "class0").iterdir():
        f.rename(one / f.name)
    corrupt = make_image_folder(root / "corrupt", classes=2, per_class=3, size=8, split=False)
    (corrupt / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    space = root / "bad.yaml"
    space.write_text("params:\n  depth: {type: int, low: 5, high: 1}\n")
    yaml_err = root / "broken.yaml"
    yaml_err.write_text("params: {depth: [1, 2\n")
    return {"root": root, "empty": root / "empty", "one": root / "one", "corrupt": corrupt, "space": space,
            "yaml": yaml_err}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--data", "{root}/does-not-exist"], "no such folder, and not a known data set"),
        (["--data", "{empty}"], "no class folders found"),
        (["--data", "{one}"], "only one class ('cat')"),
        (["--data", "{corrupt}"], "broken.png: not a readable image"),
        (["--task", "video"], "unknown task 'video' (choose from: anomaly, image"),
        (["--sampler", "bayes"], "unknown sampler 'bayes' (choose from: tpe, random, cmaes, gp, nsga2, grid)"),
        (["--pruner", "asha"], "unknown pruner 'asha' (choose from: hyperband, median, sha, none)"),
        (["--space", "{space}"], "parameter 'depth': low (5) is greater than high (1)"),
        (["--space", "{yaml}"], "malformed YAML"),
        (["--trials", "0"], "--trials must be >= 1"),
        (["--storage", "redis://localhost/0"], "unknown scheme 'redis'"),
        (["--bogus-option"], "No such option: --bogus-option"),
    ],
)
def test_search_bad_input(bad_inputs: dict[str, Path], args: list[str], fragment: str) -> None:
    args = [a.format(**bad_inputs) for a in args]
    proc = run_cli("search", "--trials", "1", "--epochs", "1", "--out", str(bad_inputs["root"] / "runs"), *args)
    assert_one_line_error(proc, fragment.format(**bad_inputs))


def test_verbose_shows_traceback(bad_inputs: dict[str, Path]) -> None:
    proc = run_cli("--verbose", "search", "--task", "video")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "not a readable automl checkpoint"),
        (b"garbage" * 100, "not a readable automl checkpoint"),
        (None, "checkpoint not found"),
    ],
)
def test_load_model_rejects_broken_checkpoints(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "best.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(automl.ArtifactError) as info:
        automl.load_model(path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_load_model_rejects_foreign_and_truncated(tmp_path: Path, digits_best_pt: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(automl.ArtifactError, match="missing keys: format_version, task, arch, state_dict"):
        automl.load_model(foreign)
    truncated = tmp_path / "truncated.pt"
    data = digits_best_pt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(automl.ArtifactError, match="not a readable automl checkpoint"):
        automl.load_model(truncated)
    ckpt = torch.load(digits_best_pt, weights_only=True)
    ckpt["state_dict"] = {k: v[..., :1] if v.dim() else v for k, v in ckpt["state_dict"].items()}
    mismatched = tmp_path / "mismatched.pt"
    torch.save(ckpt, mismatched)
    with pytest.raises(automl.ArtifactError, match="weights do not match the stored architecture"):
        automl.load_model(mismatched)


def test_pickled_object_is_not_executed(tmp_path: Path) -> None:
    """A checkpoint that carries a pickled object is refused by weights_only loading, never run."""
    import pickle

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format_version": 1, "payload": Evil()}, fh)
    with pytest.raises(automl.ArtifactError):
        automl.load_model(path)
    assert not (tmp_path / "pwned").exists()
