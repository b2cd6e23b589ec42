"""Autoencoders of the anomaly task: a dense autoencoder (``ae``), its denoising variant (``dae``:
Gaussian input noise and feature masking while training), a variational autoencoder (``vae``) and a
convolutional autoencoder for images (``convae``).

Every model's ``forward`` returns the anomaly score, shape (N,), so the exported ONNX model outputs
the score itself: the mean squared reconstruction error over the (per-feature standardised) inputs,
or for the VAE the negative ELBO per feature (squared error / 2 plus the KL term, the decoder read as
a unit-variance Gaussian; the latent mean is decoded in eval mode, so scores are deterministic). In
train mode the same forward returns each row's training loss (noisy input for ``dae``, a sampled
latent for ``vae``), so the task's loss is the batch mean. Scores are computed in float32 whatever
autocast does. Encoder and decoder widths are explicit per layer, so pruning can narrow them.
"""

from __future__ import annotations

import torch
from torch import nn

from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models.cnn import ACTIVATIONS

#: bounds on what an arch may build (``ModelFamily.limits``): units of a layer, rows of input features
AE_LIMITS = {"in_features": (1, 100_000), "encoder": (1, 8192), "decoder": (1, 8192), "bottleneck": (1, 8192),
             "in_channels": (1, 16), "widths": (1, 1024), "up": (1, 1024), "height": (1, 4096),
             "size_w": (1, 4096)}
MAX_AE_DEPTH = 6


def _widths(params: Params, meta: Meta) -> tuple[list[int], int]:
    """(encoder widths, bottleneck): ``depth`` layers halving from ``width``, then ``bottleneck``."""
    depth, width = int(params.get("depth", 2)), int(params.get("width", 64))
    bottleneck = int(params.get("bottleneck", 8))
    if not 1 <= depth <= MAX_AE_DEPTH or width < 1 or bottleneck < 1:
        raise ValueError(f"depth must be in [1, {MAX_AE_DEPTH}], width and bottleneck >= 1, "
                         f"got depth={depth}, width={width}, bottleneck={bottleneck}")
    return [max(bottleneck, width >> i) for i in range(depth)], bottleneck


def dense_arch(family: str, params: Params, meta: Meta) -> Arch:
    """Sampled parameters + tabular metadata -> the plain arch dict of a dense (denoising, variational) AE."""
    activation = params.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
    encoder, bottleneck = _widths(params, meta)
    features = 1
    for d in meta["input_shape"]:  # images are flattened: C x H x W features
        features *= int(d)
    return {"family": family, "in_features": features, "encoder": encoder,
            "bottleneck": bottleneck, "decoder": encoder[::-1], "activation": activation,
            "dropout": float(params.get("dropout", 0.0)),
            "noise": float(params.get("noise", 0.0)) if family == "dae" else 0.0,
            "mask": float(params.get("mask", 0.0)) if family == "dae" else 0.0}


def _stack(width_in: int, widths: list[int], act: type[nn.Module], dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(width_in, int(w)), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width_in = int(w)
    return nn.Sequential(*layers), width_in


class DenseAE(nn.Module):
    """encoder -> bottleneck -> decoder -> reconstruction; forward gives the score (N,)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        act = ACTIVATIONS[arch["activation"]]
        f, self.variational = int(arch["in_features"]), arch["family"] == "vae"
        self.noise, self.mask = float(arch["noise"]), float(arch["mask"])
        self.encoder, w = _stack(f, arch["encoder"], act, float(arch["dropout"]))
        b = int(arch["bottleneck"])
        self.mu = nn.Linear(w, b)
        self.logvar = nn.Linear(w, b) if self.variational else None
        self.decoder, w = _stack(b, arch["decoder"], act, float(arch["dropout"]))
        self.out = nn.Linear(w, f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = clean = x.flatten(1).float()
        if self.training and (self.noise > 0 or self.mask > 0):  # denoising: corrupt the input, rebuild the clean one
            x = clean + self.noise * torch.randn_like(clean)
            if self.mask > 0:
                x = x * (torch.rand_like(clean) >= self.mask).to(clean.dtype)
        h = self.encoder(x)
        mu = self.mu(h)
        if self.logvar is None:
            return (self.out(self.decoder(mu)).float() - clean).pow(2).mean(dim=1)
        logvar = self.logvar(h).float().clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        rec = 0.5 * (self.out(self.decoder(z)).float() - clean).pow(2).sum(dim=1)
        kl = 0.5 * (mu.float().pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return (rec + kl) / clean.shape[1]


class _DenseFamily(ModelFamily):
    """Shared by ``ae``, ``dae`` and ``vae``: pruning narrows the encoder and decoder layers."""

    tasks = ("anomaly",)
    params = frozenset({"depth", "width", "bottleneck", "activation", "dropout"})
    limits = AE_LIMITS

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return dense_arch(self.name, params, meta)

    def build(self, arch: Arch) -> nn.Module:
        for key in ("in_features", "encoder", "bottleneck", "decoder", "activation", "dropout", "noise", "mask"):
            if key not in arch:
                raise KeyError(key)
        return DenseAE(arch)

    def prune_ignored(self, model: nn.Module) -> list[nn.Module | nn.Parameter]:
        """The latent layers keep their size (the VAE's mean and log-variance must stay paired)."""
        return [m for m in (model.mu, model.logvar) if m is not None]

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        enc = [int(m.out_features) for m in model.encoder if isinstance(m, nn.Linear)]
        dec = [int(m.out_features) for m in model.decoder if isinstance(m, nn.Linear)]
        if len(enc) != len(arch["encoder"]) or len(dec) != len(arch["decoder"]):
            raise ValueError("pruned autoencoder has a different number of layers than its arch")
        if int(model.out.out_features) != int(arch["in_features"]):
            raise ValueError("pruned autoencoder's output no longer matches its input")
        return {**arch, "encoder": enc, "decoder": dec}


@register_model("ae")
class AEFamily(_DenseFamily):
    """A dense autoencoder; score = mean squared reconstruction error of the standardised features."""


@register_model("dae")
class DAEFamily(_DenseFamily):
    """A denoising autoencoder: trained to rebuild rows from noisy (``noise`` std) and masked
    (``mask``: share of features zeroed) copies."""

    params = _DenseFamily.params | {"noise", "mask"}


@register_model("vae")
class VAEFamily(_DenseFamily):
    """A variational autoencoder; score = negative ELBO per feature."""


# --- images ---------------------------------------------------------------------------------------------


class ConvAE(nn.Module):
    """Two stride-2 convolutions down; back up by nearest-neighbour resizing to the first convolution's
    output size, a 3x3 convolution, resizing to the input size and a 3x3 convolution to the input's
    channels. The resizes
    name their output sizes (not scale factors), so ONNX Runtime's symbolic shape inference, which
    INT8 quantization runs, resolves every shape (a scale-factor ``Resize`` left the batch axis as
    ``floor(1.0*batch)`` and made it write temporary files into the working directory)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        act = ACTIVATIONS[arch["activation"]]
        c, (w1, w2), up = int(arch["in_channels"]), (int(v) for v in arch["widths"]), int(arch["up"])
        h, w = int(arch["height"]), int(arch["size_w"])
        half = ((h + 1) // 2, (w + 1) // 2)  # the first stride-2 convolution's output size
        self.encoder = nn.Sequential(nn.Conv2d(c, w1, 3, stride=2, padding=1), act(),
                                     nn.Conv2d(w1, w2, 3, stride=2, padding=1), act())
        self.decoder = nn.Sequential(nn.Upsample(size=half, mode="nearest"), nn.Conv2d(w2, up, 3, padding=1), act(),
                                     nn.Upsample(size=(h, w), mode="nearest"))
        self.out = nn.Conv2d(up, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rec = self.out(self.decoder(self.encoder(x)))
        return (rec.float() - x.float()).pow(2).flatten(1).mean(dim=1)


@register_model("convae")
class ConvAEFamily(ModelFamily):
    """A convolutional autoencoder of the anomaly task's images; pruning narrows its three inner convolutions."""

    tasks = ("anomaly",)
    params = frozenset({"width", "activation"})
    limits = AE_LIMITS

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        shape = meta["input_shape"]
        if len(shape) != 3:
            raise ValueError("convae takes images (C, H, W); use ae, dae or vae for tables")
        width = int(params.get("width", 16))
        activation = params.get("activation", "relu")
        if width < 1 or activation not in ACTIVATIONS:
            raise ValueError(f"convae: width must be >= 1 and activation one of {', '.join(ACTIVATIONS)}")
        return {"family": "convae", "in_channels": int(shape[0]), "height": int(shape[1]), "size_w": int(shape[2]),
                "widths": [width, 2 * width], "up": width, "activation": activation}

    def build(self, arch: Arch) -> nn.Module:
        for key in ("in_channels", "height", "size_w", "widths", "up", "activation"):
            if key not in arch:
                raise KeyError(key)
        if len(arch["widths"]) != 2:
            raise ValueError("convae has two encoder widths")
        return ConvAE(arch)

    def pruned_arch(self, model: nn.Module, arch: Arch) -> Arch:
        convs = [m for m in [*model.encoder, *model.decoder] if isinstance(m, nn.Conv2d)]
        if int(model.out.out_channels) != int(arch["in_channels"]) or len(convs) != 3:
            raise ValueError("pruned convae no longer matches its arch")
        return {**arch, "widths": [int(m.out_channels) for m in convs[:2]], "up": int(convs[2].out_channels)}
