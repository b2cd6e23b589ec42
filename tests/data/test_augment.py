"""Per-image random crop and flip (batched, seeded) and flip test-time augmentation."""

from __future__ import annotations

import pytest
import torch

from automl.data.augment import crop_flip, crop_pad_for, flip_tta, random_crop, random_flip
from automl.exceptions import ConfigError
from automl.models import build_from_arch, get_model


def _batch(n: int = 16, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    # Every pixel distinct, so a crop offset is recoverable from the output.
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1


def _offset(src: torch.Tensor, out: torch.Tensor, pad: int) -> tuple[int, int]:
    """The (dy, dx) offset into the zero-padded ``src`` that ``out`` was cut from."""
    padded = torch.nn.functional.pad(src, (pad,) * 4)
    h, w = src.shape[-2:]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            if torch.equal(padded[:, dy : dy + h, dx : dx + w], out):
                return dy, dx
    raise AssertionError("output is no crop of the padded input")


def test_crop_and_flip_keep_shape_dtype_and_device() -> None:
    x = _batch()
    for mode in ("zeros", "reflect"):
        out = crop_flip(x, 2, True, torch.Generator().manual_seed(0), mode)
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert crop_pad_for(1.0, 32, 32) == 4 and crop_pad_for(0.5, 8, 8) == 1


def test_each_image_gets_its_own_crop_and_every_output_is_a_crop_of_its_input() -> None:
    x = _batch(n=32)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    offsets = [_offset(x[i], out[i], 2) for i in range(len(x))]
    assert len(set(offsets)) > 5  # 25 possible offsets, drawn per image: not one shift for the batch


def test_reflect_padding_fills_the_border_with_image_pixels_not_zeros() -> None:
    x = _batch(n=64)
    out = random_crop(x, 3, torch.Generator().manual_seed(1), mode="reflect")
    assert (out != 0).all()  # every input pixel is >= 1; zero padding would leave zeros
    zeros = random_crop(x, 3, torch.Generator().manual_seed(1), mode="zeros")
    assert (zeros == 0).any()


def test_flip_is_drawn_per_image() -> None:
    x = _batch(n=64)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(2)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(len(x))])
    assert (flipped | kept).all() and 16 < int(flipped.sum()) < 48


def test_same_seed_same_augmentation_other_seed_other() -> None:
    x = _batch(n=32)
    a = crop_flip(x, 2, True, torch.Generator().manual_seed(7), "reflect")
    b = crop_flip(x, 2, True, torch.Generator().manual_seed(7), "reflect")
    c = crop_flip(x, 2, True, torch.Generator().manual_seed(8), "reflect")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_padding_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown padding mode 'wrap'"):
        random_crop(_batch(), 2, mode="wrap")
    with pytest.raises(ConfigError, match="crop padding must be >= 0"):
        random_crop(_batch(), -1)


def test_flip_tta_is_the_mean_of_the_two_forward_passes() -> None:
    family = get_model("resnet")
    meta = {"input_shape": [3, 16, 16], "num_classes": 5}
    params = {"width1": 8, "width2": 8, "width3": 16, "depth1": 1, "depth2": 0, "depth3": 1, "stem": 8}
    torch.manual_seed(0)
    plain = build_from_arch(family.arch_from_params(params, meta)).eval()
    tta = build_from_arch(family.arch_from_params({**params, "tta": True}, meta)).eval()
    tta.load_state_dict(plain.state_dict())
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        expected = (plain(x) + plain(x.flip(3))) / 2
        got = tta(x)
        assert torch.allclose(got, expected, atol=1e-5)
        assert torch.allclose(flip_tta(plain, x), expected, atol=1e-5)
        assert not torch.allclose(got, plain(x), atol=1e-3)  # the flip really changes the logits
    tta.train()
    assert torch.allclose(tta(x), plain.train()(x), atol=1e-5)  # training passes are not averaged


def test_flip_and_pad_mode_reach_the_image_augmentation_through_fit() -> None:
    from automl.tasks import get_task
    from automl.train import fit, train_config_from_params

    cfg = train_config_from_params({"flip": True, "pad_mode": "reflect", "augment": True, "batch_size": 8},
                                   epochs=1, seed=0)
    assert cfg.flip is True and cfg.pad_mode == "reflect"
    with pytest.raises(ConfigError, match="unknown pad_mode 'wrap'"):
        train_config_from_params({"pad_mode": "wrap"}, epochs=1)
    task = get_task("image")
    real = task.augment_fn({"hflip": False})  # folder data: no flips unless the config asks
    seen: list[dict] = []

    def recording(x: torch.Tensor, strength: float, gen: torch.Generator, **kw: object) -> torch.Tensor:
        seen.append(kw)
        return real(x, strength, gen, **kw)

    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 2
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    fit(model, x, y, x, y, cfg, task.loss_fn(), task.metric_fn(), recording)
    assert seen and all(kw == {"flip": True, "pad_mode": "reflect"} for kw in seen)
    # The same seed gives the same crops; flip=True then mirrors some images of the batch, not all.
    xs = _batch(n=32)
    no_flip = real(xs, 1.0, torch.Generator().manual_seed(0), flip=False, pad_mode="reflect")
    flips = real(xs, 1.0, torch.Generator().manual_seed(0), flip=True, pad_mode="reflect")
    mirrored = [torch.equal(flips[i], no_flip[i].flip(2)) for i in range(len(xs))]
    same = [torch.equal(flips[i], no_flip[i]) for i in range(len(xs))]
    assert all(m or s for m, s in zip(mirrored, same, strict=True)) and 0 < sum(mirrored) < len(xs)
    assert (no_flip != 0).all()  # reflect padding: no zeros from the border


def test_a_tta_model_exports_to_onnx_with_a_dynamic_batch(tmp_path: object) -> None:
    import numpy as np

    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits

    meta = {"input_shape": [3, 16, 16], "num_classes": 4}
    arch = get_model("resnet").arch_from_params({"width1": 8, "width2": 8, "width3": 8, "stem": 8, "tta": True}, meta)
    torch.manual_seed(0)
    model = build_from_arch(arch).eval()
    path = export_onnx(model, torch.zeros(1, 3, 16, 16), tmp_path / "tta.onnx", {"automl.task": "image"})  # type: ignore[operator]
    x = torch.randn(7, 3, 16, 16)
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort_logits(session(path), x.numpy(), batch=7)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
