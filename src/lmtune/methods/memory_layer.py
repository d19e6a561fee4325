"""A product-key memory layer: a large bank of small experts, each token reading the top-k of them.

For a hidden state h (one token), with n sub-keys per half (a bank of N = n² experts):

    r          = sqrt(mean(h²))                       the hidden state's scale
    q          = W_q (h / r - c)                      query, split in halves q = [q_a ; q_b]
    s(i, j)    = <q_a, K_a[i]> + <q_b, K_b[j]>        score of expert e = i n + j (product keys)
    E          = top-k over e of s                    found exactly from the top-k of each half
    w          = softmax(s(e) for e in E)
    m(h)       = g r W_o sum_{e in E} w_e V[e]        V[e] in R^value_dim: one small value vector per expert
    g          = sigmoid(w_g . (h / r - c) + b_g)     optional per-token gate (g = 1 without it)

In training, q may carry Gaussian noise (`query_noise`), so that the experts near the ones a fact's
training phrasings reach learn it too.

and the block's output becomes h + m(h). c is the mean of h / r over every token seen in training
(a running average, frozen at evaluation): a trained model's hidden states share a large common
direction (mean pairwise cosine ~0.55 in SmolLM2's middle blocks), which without centring sends most
tokens to the same few experts; centring gives them about twice as many distinct experts (PKM puts a
batch norm on the query for the same reason; a running mean used in training and evaluation alike keeps
the experts a token reads at evaluation the ones it trained). W_o (value_dim -> hidden) is shared by
the experts, so each expert costs only value_dim parameters and a bank of tens of thousands fits the
budget of a low-rank adapter; a large bank is what keeps different facts (and ordinary text) on
different experts. Values
are in units of the hidden state's scale r (which grows from ~1 to ~30 through the depth of a trained
model), so one learning rate suits any block. V starts at zero, so at initialisation m(h) = 0 and the model
computes exactly the base function; only the selected experts' values receive gradient on each token,
which is what lets a large bank store many independent facts (Lample et al. 2019, "Large Memory Layers
with Product Keys"; Lamini's "memory tuning" uses a bank of memory experts the same way).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def rms(h: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """sqrt(mean(h²) + eps) over the last dimension, kept as a trailing dimension of size 1."""
    return (h.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()


def product_topk(scores_a: torch.Tensor, scores_b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest s(i, j) = scores_a[..., i] + scores_b[..., j] over all n_a x n_b pairs, without
    forming all of them.

    Every pair in the top k has i among the top k of scores_a and j among the top k of scores_b (a pair
    with i outside it is beaten by k pairs (i', j) with i' inside), so the k² sums of those candidates
    contain the answer: O(n_a + n_b + k²) per token instead of O(n_a n_b).

    Args:
        scores_a: (..., n_a) scores of the first half's sub-keys.
        scores_b: (..., n_b) scores of the second half's sub-keys.
        k: how many experts to select (at most min(n_a, n_b)).

    Returns:
        (scores, indices), each (..., k), best first; expert index = i * n_b + j.
    """
    n_b = scores_b.shape[-1]
    top_a, idx_a = scores_a.topk(k, dim=-1)
    top_b, idx_b = scores_b.topk(k, dim=-1)
    sums = (top_a.unsqueeze(-1) + top_b.unsqueeze(-2)).flatten(-2)  # (..., k*k), pair (p, q) at p*k + q
    best, flat = sums.topk(k, dim=-1)
    i = idx_a.gather(-1, torch.div(flat, k, rounding_mode="floor"))
    j = idx_b.gather(-1, flat % k)
    return best, i * n_b + j


class MemoryLayer(nn.Module):
    """num_keys² experts (one value vector each) behind product keys; `forward(h)` returns m(h)."""

    center: torch.Tensor
    """c: running mean of the normalised hidden states seen in training (a buffer, saved with the weights)."""
    seen: torch.Tensor
    """How many hidden states `center` averages (float64 scalar buffer)."""

    def __init__(
        self,
        hidden_size: int,
        num_keys: int,
        topk: int,
        key_dim: int,
        value_dim: int,
        gate: bool = False,
        query_noise: float = 0.0,
    ) -> None:
        """Build the bank.

        Args:
            hidden_size: width of the hidden states read and written.
            num_keys: sub-keys per half; the bank holds num_keys² experts.
            topk: experts read per token.
            key_dim: query width (each half of the product key has key_dim / 2).
            value_dim: width of each expert's value vector (mapped to hidden_size by the shared W_o).
            gate: multiply m(h) by a per-token gate (see `gate_weight`), so the memory can stay silent.
            query_noise: standard deviation of the Gaussian noise added to the query in training only.
        """
        super().__init__()
        if key_dim % 2:
            raise ValueError(f"key_dim must be even (two halves of the product key), got {key_dim}")
        if not 1 <= topk <= num_keys:
            raise ValueError(f"topk must be between 1 and num_keys ({num_keys}), got {topk}")
        self.num_keys = num_keys
        self.topk = topk
        self.query_noise = query_noise
        half = key_dim // 2
        # Unit-variance queries and scores at init, so the top-k softmax starts neither flat nor one-hot.
        self.query = nn.Parameter(torch.randn(key_dim, hidden_size) / math.sqrt(hidden_size))
        self.keys_a = nn.Parameter(torch.randn(num_keys, half) / math.sqrt(half))
        self.keys_b = nn.Parameter(torch.randn(num_keys, half) / math.sqrt(half))
        self.values = nn.Parameter(torch.zeros(num_keys * num_keys, value_dim))
        self.out = nn.Parameter(torch.randn(hidden_size, value_dim) / math.sqrt(value_dim))
        # Gate logit starts at 0 for every token (g = 1/2); m(h) is zero at init either way (V = 0).
        self.gate = nn.Parameter(torch.zeros(hidden_size + 1)) if gate else None
        self.register_buffer("center", torch.zeros(hidden_size))
        self.register_buffer("seen", torch.zeros((), dtype=torch.float64))
        self.enabled = True
        """False: the block adds nothing (the model computes the base function)."""

    @property
    def num_experts(self) -> int:
        """Experts in the bank: num_keys²."""
        return self.num_keys * self.num_keys

    def route(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixing weights (softmax of the top-k scores) and indices of the experts each token reads.

        Args:
            h: (..., hidden) hidden states.

        Returns:
            (weights, indices), each (..., topk).
        """
        x = h.to(self.query.dtype)
        x = x / rms(x)
        if self.training:
            self._update_center(x.detach().reshape(-1, x.shape[-1]))
        q = F.linear(x - self.center, self.query)
        if self.training and self.query_noise > 0:
            q = q + self.query_noise * torch.randn_like(q)
        q_a, q_b = q.chunk(2, dim=-1)
        scores, indices = product_topk(q_a @ self.keys_a.T, q_b @ self.keys_b.T, self.topk)
        return scores.softmax(dim=-1), indices

    @torch.no_grad()
    def _update_center(self, rows: torch.Tensor) -> None:
        """c <- the mean over every row seen so far: c (seen / total) + sum(rows) / total."""
        total = self.seen + rows.shape[0]
        self.center.mul_((self.seen / total).to(self.center.dtype)).add_(rows.sum(0) / total.to(rows.dtype))
        self.seen.copy_(total)

    def gate_weight(self, h: torch.Tensor) -> torch.Tensor:
        """g(h) = sigmoid(w_g . (h / r - c) + b_g), (..., 1): how much of m(h) a token lets through
        (1 without a gate). Trained on facts and ordinary text alike, it learns to open on the contexts
        the memory stores and to stay shut on the rest."""
        if self.gate is None:
            return torch.ones_like(h[..., :1], dtype=self.values.dtype)
        x = h.to(self.gate.dtype)
        return torch.sigmoid(F.linear(x / rms(x) - self.center, self.gate[:-1].unsqueeze(0)) + self.gate[-1])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """m(h) = g(h) rms(h) W_o (sum over the selected experts of softmax weight x value), shaped as h."""
        weights, indices = self.route(h)
        mixed = F.embedding_bag(
            indices.reshape(-1, self.topk),
            self.values,
            per_sample_weights=weights.reshape(-1, self.topk),
            mode="sum",
        )
        out = F.linear(mixed, self.out).reshape(h.shape)
        return (self.gate_weight(h) * rms(h.to(self.values.dtype)) * out).to(h.dtype)
