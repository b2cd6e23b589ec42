"""--jobs placement on GPUs, with a faked device count (no GPU is needed): round robin over the
visible GPUs, several trials per GPU allowed, an explicit cuda:K or cpu kept for every worker."""

from __future__ import annotations

import pytest
import torch

from automl.study._jobs import child_devices


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_round_robin_over_several_gpus(gpus) -> None:
    gpus(2)
    assert child_devices("auto", 5) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    gpus(4)
    assert child_devices("cuda", 8) == [f"cuda:{i % 4}" for i in range(8)]


def test_several_trials_share_one_gpu(gpus) -> None:
    gpus(1)
    assert child_devices("auto", 3) == ["cuda:0"] * 3


def test_explicit_device_and_cpu_are_kept(gpus) -> None:
    gpus(2)
    assert child_devices("cuda:1", 3) == ["cuda:1"] * 3
    assert child_devices("cpu", 2) == ["cpu", "cpu"]
    gpus(0)
    assert child_devices("auto", 2) == ["auto", "auto"]
