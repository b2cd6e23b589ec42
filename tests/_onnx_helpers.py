"""Helpers for the serve and predict tests: a small trained digits checkpoint (under a second, so
these tests need not wait for the session-wide search), its ONNX export, digit PNG files, and a
real ``automl serve`` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def tiny_digits_checkpoint(path: Path, steps: int = 80, seed: int = 0) -> Path:
    """Train a 2-block CNN on scikit-learn digits for ``steps`` Adam steps and save it as
    best.pt with the same preprocessing spec the image task writes."""
    import torch

    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.data.images import load_digits
    from automl.data.preprocess import normalize
    from automl.models import build_from_arch
    from automl.models.cnn import cnn_arch

    torch.manual_seed(seed)
    data = load_digits()
    x01, y = data.x[:1200], data.y[:1200]
    mean = x01.mean(axis=(0, 2, 3)).astype(float)
    std = np.maximum(x01.std(axis=(0, 2, 3)), 1e-6).astype(float)
    spec = {"kind": "image", "channels": 1, "size": [8, 8], "mean": mean.tolist(), "std": std.tolist()}
    meta = {"task": "image", "input_shape": [1, 8, 8], "num_classes": 10, "classes": list(data.classes),
            "hflip": False}
    arch = cnn_arch({"depth": 2, "width": 8, "batch_norm": True}, meta)
    model = build_from_arch(arch)
    x = torch.from_numpy(normalize(x01, spec))
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and ten times so on a busy machine
    model.train()
    try:
        for _ in range(steps):  # mini-batches of 128: a few epochs' worth, about a second
            idx = torch.randint(0, len(yt), (128,), generator=gen)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), yt[idx]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    ckpt = make_checkpoint(task="image", arch=arch, model=model, preprocess={**spec, **meta},
                           data={"source": "digits"}, metrics={"metric": "accuracy"})
    return save_checkpoint(path, ckpt)


def task_checkpoint(task_name: str, source: str, path: Path, params: dict[str, Any] | None = None) -> Path:
    """An untrained (seeded) model of a registered task on ``source``, saved in the best.pt format the
    search writes: enough to check that every path computes the same outputs from the same input."""
    import torch

    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.data.bundle import DataConfig
    from automl.tasks import get_task

    torch.manual_seed(0)
    task = get_task(task_name)
    bundle = task.load_data(DataConfig(source=source))
    arch = task.arch_from_params(params or {}, bundle.meta)
    model = task.build_model(params or {}, bundle.meta).eval()
    preprocess = dict(bundle.meta["preprocess"])
    meta = {k: v for k, v in bundle.meta.items() if k != "preprocess"}
    ckpt = make_checkpoint(task=task.name, arch=arch, model=model, preprocess={**preprocess, **meta},
                           data={"source": source}, metrics={"metric": task.metric})
    return save_checkpoint(path, ckpt)


def export_checkpoint(best_pt: Path, out: Path, variant: str = "fp32") -> Path:
    """best.pt -> an automl ONNX file with metadata (the compress exporter)."""
    import torch

    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.runtime.export import export_onnx
    from automl.runtime.onnx_meta import metadata_from_checkpoint

    ckpt = load_checkpoint(best_pt)
    model = model_from_checkpoint(ckpt)
    pre = ckpt["preprocess"]
    dtype = torch.int64 if pre.get("kind") == "text" else torch.float32  # token ids
    example = torch.ones((1, *pre["input_shape"]), dtype=dtype)
    return export_onnx(model, example, out, metadata_from_checkpoint(ckpt, variant, str(best_pt)))


def digit_pngs(folder: Path, indices: list[int]) -> list[Path]:
    """Digits samples saved as 8-bit grayscale PNG files (the pixels training saw, up to rounding)."""
    from PIL import Image

    from automl.data.images import load_digits

    data = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in indices:
        arr = np.round(data.x[i, 0] * 255).astype(np.uint8)
        p = folder / f"digit{i}_label{data.y[i]}.png"
        Image.fromarray(arr, mode="L").save(p)
        paths.append(p)
    return paths


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def automl_argv(*args: str) -> list[str]:
    """The ``automl`` command line, run with this interpreter from the repository."""
    return [sys.executable, "-c", "import cli; cli.main()", *args]


class ServerProcess:
    """``automl serve`` in a subprocess on a free loopback port; a context manager that stops it."""

    def __init__(self, model: Path, *extra: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.argv = automl_argv("serve", str(model), "--port", str(self.port), *extra)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        import httpx

        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=self._fh, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
