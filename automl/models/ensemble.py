"""The ensemble family: a weighted average of other families' trained models (Caruana et al. 2004,
"Ensemble selection from libraries of models"; the members and weights are chosen by
``automl.search.ensemble``).

One ``nn.Module`` holds the members (each rebuilt from its own arch through the model registry) and
the weights as a buffer, so best.pt stays plain tensors plus a plain arch (``weights_only`` loading),
and the module exports as one ONNX graph like any other model:

- classification: members output logits; the ensemble outputs ``log(sum_i w_i softmax(z_i))``, the
  log of the weighted mean probability, so ``softmax`` of its output *is* that mean probability and
  ``argmax`` picks the same class — ``predict``, ``serve`` and the metrics need nothing new;
- regression: ``sum_i w_i y_i`` (every member already outputs the target in its own units).

Not searchable: ``tasks`` is empty, so no search space can pick it; the search builds it at the end
from its own trials. Pruning does not apply (the members are pruned as their own families, not
through an average); INT8/FP16 quantization applies to the whole graph.
"""

from __future__ import annotations

import torch
from torch import nn

from automl.models._arch_bounds import check_arch_bounds, family_of
from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model

KINDS = ("classification", "regression")
#: distinct members an ensemble may hold (selection runs at most ``automl.search.ensemble.MAX_ROUNDS``
#: rounds, so it never picks more)
MAX_MEMBERS = 64
#: stored tensors a member's arch is bounded against (``check_arch_bounds``): the member's own count is
#: not known before it is built; the weights are still matched tensor by tensor after the build
MEMBER_TENSORS = 1024
#: a weight is floored here before its log (a forged 0 or negative weight must not give -inf or NaN)
WEIGHT_FLOOR = 1e-12


def check_members(arch: Arch) -> tuple[str, list[Arch], int]:
    """(kind, member archs, outputs) of an ensemble arch, checked before anything is built: ValueError
    (KeyError for a missing key) otherwise. Members may not be ensembles themselves."""
    kind, members, out = arch["kind"], arch["members"], arch["out_features"]
    if kind not in KINDS:
        raise ValueError(f"ensemble arch 'kind' must be one of {', '.join(KINDS)}, got {str(kind)[:40]}")
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS:
        raise ValueError(f"ensemble arch 'members' must list 1 to {MAX_MEMBERS} member archs")
    if isinstance(out, bool) or not isinstance(out, int) or not 1 <= out <= 100_000:
        raise ValueError("ensemble arch 'out_features' must be a positive integer")
    if (kind == "regression") != (out == 1):
        raise ValueError(f"ensemble arch: a {kind} ensemble cannot have {out} outputs")
    for i, member in enumerate(members):
        if not isinstance(member, dict):
            raise ValueError(f"ensemble member {i} is not an arch")
        family = family_of(member)
        if family.name == "ensemble":
            raise ValueError("an ensemble member cannot be an ensemble")
        check_arch_bounds(member, family, MEMBER_TENSORS, f"ensemble member {i}")
    return kind, members, out


class Ensemble(nn.Module):
    """Members (``self.members``, a ``ModuleList``) and their weights (buffer ``weights``, summing to 1)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        kind, members, out = check_members(arch)
        self.kind, self.out_features = kind, out
        self.members = nn.ModuleList(family_of(m).build(m) for m in members)
        self.register_buffer("weights", torch.full((len(members),), 1.0 / len(members)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([member(x).float() for member in self.members])  # (members, N, outputs)
        if self.kind == "regression":
            return (outs * self.weights.reshape(-1, 1, 1)).sum(0)
        # log(sum_i w_i softmax(z_i)) = logsumexp_i(log_softmax(z_i) + log w_i): no log of a sum that
        # underflowed to 0 (TabM averages its members the same way)
        logw = torch.log(self.weights.clamp_min(WEIGHT_FLOOR)).reshape(-1, 1, 1)
        return torch.logsumexp(torch.log_softmax(outs, dim=-1) + logw, dim=0)


@register_model("ensemble")
class EnsembleFamily(ModelFamily):
    """Built by the search from its own trials (``automl.search.ensemble``), never sampled."""

    tasks = ()  # no task lists it: a search space cannot pick it
    prune_unsupported = "an ensemble is not pruned as a whole (its members are models of their own families)"
    max_layers = MAX_MEMBERS
    #: every list inside a member arch (a member's per-column embeddings included) is bounded by the
    #: member's own family in ``check_members``; here only a total for the nested walk
    column_lists = {"members": 100_000}

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        raise ValueError("the ensemble is built from a search's trials, not from sampled parameters")

    def build(self, arch: Arch) -> nn.Module:
        return Ensemble(arch)


def ensemble_arch(members: list[Arch], out_features: int, regression: bool, **info: object) -> Arch:
    """The plain arch of an ensemble of ``members`` (their own archs, in order); ``info``: plain extras
    kept beside (the members' trial numbers, their families, the best member's index)."""
    return {"family": "ensemble", "kind": "regression" if regression else "classification",
            "out_features": int(out_features), "members": list(members), **info}
