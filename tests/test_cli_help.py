"""Help pages, --version, option names, and errors that come before PyTorch is imported (issue 12)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

AUTOML = [sys.executable, "-c", "import cli; cli.main()"]
COMMANDS = ("search", "compress", "serve", "predict", "worker", "report", "trials", "dashboard")


def run_cli(*args: str, columns: int = 100, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    return subprocess.run([*AUTOML, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    return {c: run_cli(c, "--help").stdout for c in COMMANDS}


def test_switches_take_no_value_and_usage_names_arguments(helps: dict[str, str]) -> None:
    for command, text in helps.items():
        assert "<bool>" not in text, command
        assert re.search(r"--json\s+Print", text) or command == "serve", (command, text)
    assert "BEST_PT" in helps["compress"].splitlines()[1] and "{best_pt}" not in helps["compress"]
    assert "MODEL INPUTS..." in helps["predict"]


def test_out_dir_is_the_folder_everywhere_and_old_names_still_work(helps: dict[str, str], tmp_path: Path) -> None:
    for command in ("search", "compress", "worker", "report", "trials", "dashboard"):
        assert "--out-dir" in helps[command], command
        assert not re.search(r"--out\b(?!-)", helps[command]), command  # the old name is hidden
    assert "--html" in helps["report"]
    # The hidden old name still parses (it shipped): a wrong task fails on the task, not on --out.
    proc = run_cli("search", "--out", str(tmp_path / "runs"), "--task", "video")
    assert proc.returncode == 1 and "unknown task 'video'" in proc.stderr
    proc = run_cli("search", "--out", str(tmp_path / "a"), "--out-dir", str(tmp_path / "b"), "--task", "video")
    assert proc.returncode == 2 and "--out-dir and --out (its old name) disagree" in proc.stderr


def test_install_hints_keep_their_brackets(helps: dict[str, str]) -> None:
    """Rich reads "[mlflow]" as markup and drops it unless escaped: the hint must be copyable."""
    text = " ".join(helps["search"].replace("│", " ").split())
    assert "pip install 'automl[mlflow]'" in text and "pip install 'automl[tensorboard]'" in text
    assert "pip install 'automl[mlflow]'" in " ".join(helps["compress"].replace("│", " ").split())


def test_descriptions_wrap_at_the_terminal_width_not_the_source(helps: dict[str, str]) -> None:
    wide = run_cli("search", "--help", columns=250).stdout
    # The source breaks this paragraph after "the trial pruner" and after "Running again with";
    # on a wide terminal the text runs on past both.
    assert re.search(r"Trials train on the training split.*the trial pruner stops bad trials early.*Running again "
                     r"with the same --study", wide), wide[:2000]


def test_version() -> None:
    from automl import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"automl {__version__}"


def _timed(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = run_cli(*args)
    return time.perf_counter() - t0, proc


def _imports_torch(*args: str) -> bool:
    code = ("import atexit, sys, cli; atexit.register(lambda: sys.stdout.write("
            "'TORCH=%s' % ('torch' in sys.modules))); cli.main()")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert "TORCH=" in proc.stdout, proc.stderr
    return "TORCH=True" in proc.stdout


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fast")
    space = root / "broken.yaml"
    space.write_text("params: {depth: [1, 2\n")
    table = root / "t.csv"
    table.write_text("a,b,c\n1,2,x\n3,4,y\n5,6,x\n")
    return {"root": root, "space": space, "table": table}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--data", "{root}/no-such-folder"], "no such folder, and not a known data set"),
        (["--space", "{space}"], "malformed YAML"),
        (["--space", "{root}/nope.yaml"],
         "not a built-in space (anomaly, anomaly-image, image, image-cifar, image-full, tabular, text)"),
        (["--task", "tabular", "--data", "{table}", "--target", "nope"], "target column 'nope' not found"),
    ],
    ids=["data-path", "space-file", "space-name", "target-column"],
)
def test_argument_errors_come_before_torch(bad_files: dict[str, Path], args: list[str], fragment: str) -> None:
    args = [a.format(**bad_files) for a in args]
    full = ["search", "--out-dir", str(bad_files["root"] / "runs"), *args]
    help_s = min(_timed("--help")[0] for _ in range(2))
    took, proc = min((_timed(*full) for _ in range(2)), key=lambda r: r[0])
    assert proc.returncode == 1 and fragment in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert took < help_s + 1.5, (took, help_s)
    assert not _imports_torch(*full)
    assert not (bad_files["root"] / "runs" / "automl.db").exists()  # no study was created


def test_study_names_drop_the_file_extension() -> None:
    from automl.study._search import default_study_name

    assert default_study_name("text", "data/text-reviews.tsv") == "text-text-reviews"
    assert default_study_name("tabular", "/x/sales.csv.gz") == "tabular-sales"
    assert default_study_name("tabular", "small.parquet") == "tabular-small"
    assert default_study_name("image", "photos/") == "image-photos"
    assert default_study_name("image", "digits") == "image-digits"


def test_missing_columns_message_counts_the_rest() -> None:
    from automl.data.tabular import encode_records
    from automl.exceptions import DataError

    spec = {"columns": [{"name": f"c{i}", "type": "numeric", "mean": 0.0, "std": 1.0} for i in range(11)]}
    with pytest.raises(DataError, match=r"missing column\(s\): 'c0', 'c1', 'c2', 'c3', 'c4' and 6 more"):
        encode_records([{"other": 1}], spec)
