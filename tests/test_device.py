"""One --device rule for search, worker and compress: auto, cpu, cuda, cuda:N (checked against the
machine's GPUs). The GPU count is faked, so this runs on any machine."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import cli
from automl.device import check_device_name, resolve_device
from automl.exceptions import ConfigError


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_names(two_gpus: None) -> None:
    assert [check_device_name(n) for n in ("auto", "cpu", "cuda", "cuda:0", "cuda:12")]
    for bad in ("gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "cuda:1 "):
        with pytest.raises(ConfigError, match="unknown device"):
            check_device_name(bad)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"'cuda:2': this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


def test_without_a_gpu(no_gpu: None) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="no CUDA GPU is available here"):
            resolve_device(name)


def test_compress_and_search_accept_cuda_n_alike(two_gpus: None) -> None:
    from automl.study import SearchSettings, WorkerSettings
    from compress.pipeline import CompressSettings

    for name in ("cuda", "cuda:1"):  # compress refused cuda:1 before
        assert CompressSettings(checkpoint="best.pt", device=name).device == name
        assert SearchSettings(device=name).device == name
        assert WorkerSettings(storage="x.log", study="s", device=name).device == name


def _error(args: list[str]) -> str:
    result = CliRunner().invoke(cli.app, args, terminal_width=400)
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_compress_and_search_refuse_a_missing_gpu_alike(two_gpus: None, digits_best_pt, tmp_path) -> None:
    search = _error(["search", "--device", "cuda:2", "--trials", "1", "--out", str(tmp_path / "runs")])
    compress = _error(["compress", str(digits_best_pt), "--device", "cuda:2", "--out", str(tmp_path / "c")])
    assert "this machine has 2 CUDA GPUs" in search
    assert search == compress
    assert _error(["search", "--device", "tpu"]) == _error(["compress", str(digits_best_pt), "--device", "tpu"])
