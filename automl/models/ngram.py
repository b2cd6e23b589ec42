"""A bag-of-n-grams text classifier (fastText, Joulin et al. 2017): the embeddings of a text's
unigrams and, with ``ngrams`` 2, of its hashed bigrams, averaged over the non-padding positions,
dropout and one linear layer. The input is int64 token ids (N, L) with 0 as padding, as for the
other text families.

Unigrams are the token ids (rows 0 .. vocab_size - 1 of the table). A bigram of adjacent ids (a, b)
reads row ``vocab_size + bigram_bucket(a, b, buckets)`` (a universal hash of the pair): the hash is
computed by tensor ops inside the module, so the ONNX graph computes it from its input and nothing but
the ids crosses the model's boundary. A position whose token (a bigram: either token) is padding is
left out of the mean, so the logits do not depend on how much padding follows a text. The pooled mean
is an Embedding gather and a masked sum, which export to ONNX as plain Gather, Mul and ReduceSum nodes.

There is nothing to channel-prune (no hidden layer: ``prune_unsupported``); INT8 applies as for the
other text families (dynamic: the classifier and, through Gather, the embedding table).
"""

from __future__ import annotations

import torch
from torch import nn

from automl.models._registry import Arch, Meta, ModelFamily, Params, register_model
from automl.models._text import may_trim, token_lengths

MAX_EMBED = 4096  # embedding size (as textcnn and gru: the three share the search parameter)
MAX_BUCKETS = 2_000_000  # hashed bigram rows (fastText's default bucket count)
#: the most float32 values the embedding table may hold (rows x embed_dim; 256 M values = 1 GiB): a
#: stored arch whose every key is in bounds must still not ask for a table of tens of gigabytes
MAX_TABLE_VALUES = 2**28
#: a prime above any vocabulary (``validate_spec`` allows 2 M tokens): ``a * HASH_PRIME + b`` numbers every
#: pair of ids (a, b) apart, and stays below 2**42
HASH_PRIME = 2_000_003
#: the pair number is reduced modulo this prime (2**31 - 1) and multiplied by HASH_MUL modulo it again, a
#: universal hash (Carter and Wegman 1979): every product stays below 2**62, so the int64 arithmetic of
#: PyTorch and of the ONNX graph never wraps. Without the multiply, ``(a * HASH_PRIME + b) mod buckets``
#: is ``(3a + b) mod 20000`` for 20000 buckets: the bigrams of the frequent (low-id) tokens all fell into a
#: few hundred rows, and on Movie Review bigrams cost 3 points of accuracy instead of adding one
HASH_MOD = 2_147_483_647
HASH_MUL = 1_327_217_885  # about HASH_MOD times the golden ratio's fraction (Knuth's multiplicative hash)


def ngram_arch(params: Params, meta: Meta) -> Arch:
    """Sampled parameters + text metadata -> the plain arch dict ``BagOfNgrams`` takes."""
    ngrams = int(params.get("ngrams", 2))
    if ngrams not in (1, 2):
        raise ValueError(f"ngrams must be 1 (unigrams) or 2 (unigrams and bigrams), got {ngrams}")
    buckets = int(params.get("buckets", 20_000)) if ngrams == 2 else 0
    if ngrams == 2 and buckets < 1:
        raise ValueError(f"buckets must be >= 1 with bigrams, got {buckets}")
    return {
        "family": "ngram",
        "vocab_size": len(meta["preprocess"]["vocab"]),
        "embed_dim": int(params.get("embed_dim", 32)),
        "ngrams": ngrams,
        "buckets": buckets,
        "dropout": float(params.get("dropout", 0.5)),
        "num_classes": int(meta["num_classes"]),
    }


def bigram_bucket(a: torch.Tensor, b: torch.Tensor, buckets: int) -> torch.Tensor:
    """The bucket (0 .. buckets - 1) of each bigram of ids (a, b): int64 ops that never overflow."""
    pair = (a * HASH_PRIME + b) % HASH_MOD
    return (pair * HASH_MUL) % HASH_MOD % buckets


class BagOfNgrams(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        vocab, dim = int(arch["vocab_size"]), int(arch["embed_dim"])
        ngrams, buckets = int(arch["ngrams"]), int(arch["buckets"])
        if vocab < 1 or dim < 1 or ngrams not in (1, 2) or not (0 <= buckets <= MAX_BUCKETS):
            raise ValueError(f"vocab_size {vocab}, embed_dim {dim}, ngrams {ngrams}, buckets {buckets}")
        if (ngrams == 2) != (buckets > 0):
            raise ValueError(f"buckets must be > 0 exactly when ngrams is 2 (ngrams {ngrams}, buckets {buckets})")
        if (vocab + buckets) * dim > MAX_TABLE_VALUES:
            raise ValueError(f"an embedding table of {vocab + buckets} x {dim} values is over the limit of "
                             f"{MAX_TABLE_VALUES}")
        self.vocab_size, self.buckets = vocab, buckets
        self.embedding = nn.Embedding(vocab + buckets, dim, padding_idx=0)
        # fastText's initialisation of the input vectors: uniform in +-1/dim
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.dropout = nn.Dropout(float(arch["dropout"]))
        self.classifier = nn.Linear(dim, int(arch["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        if may_trim() and x.shape[1] > 1:  # padding adds nothing to the mean: cut it from the batch
            x = x[:, : max(1, int(token_lengths(x).max()))]
        ids, mask = x, x != 0
        if self.buckets:
            a, b = x[:, :-1], x[:, 1:]
            ids = torch.cat([ids, bigram_bucket(a, b, self.buckets) + self.vocab_size], dim=1)
            mask = torch.cat([mask, (a != 0) & (b != 0)], dim=1)
        weights = mask.unsqueeze(2).to(self.embedding.weight.dtype)  # (N, T, 1): 1 for a real n-gram
        summed = (self.embedding(ids) * weights).sum(dim=1)
        pooled = summed / weights.sum(dim=1).clamp(min=1.0)  # a text of padding alone pools to zeros
        return self.classifier(self.dropout(pooled))


@register_model("ngram")
class NgramFamily(ModelFamily):
    """The bag of n-grams for the text task; not prunable (see ``prune_unsupported``)."""

    tasks = ("text",)
    params = frozenset({"embed_dim", "ngrams", "buckets", "dropout"})
    limits = {"embed_dim": (1, MAX_EMBED), "ngrams": (1, 2), "buckets": (0, MAX_BUCKETS)}
    prune_unsupported = ("a bag of n-grams is an embedding table and its linear classifier: no hidden channels to "
                         "prune (Torch-Pruning does not narrow an embedding table)")

    def arch_from_params(self, params: Params, meta: Meta) -> Arch:
        return ngram_arch(params, meta)

    def build(self, arch: Arch) -> nn.Module:
        return BagOfNgrams(arch)
