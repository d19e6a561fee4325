"""The layer of `lora_experts`: a frozen linear plus K LoRA experts mixed per token by a softmax gate.

Imports torch at module level: `lora_experts` imports this module inside its functions only.
"""

from __future__ import annotations

import math

import torch


def lora_mixture(
    x: torch.Tensor, gate: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float
) -> torch.Tensor:
    """The mixture-of-LoRA update: delta(x) = scaling * sum_k softmax(G x)_k B_k A_k x.

    Args:
        x: inputs, shape (..., in).
        gate: G, shape (K, in).
        lora_a: A, shape (K, r, in).
        lora_b: B, shape (K, out, r).
        scaling: alpha / r.

    Returns:
        delta(x), shape (..., out).
    """
    weights = torch.softmax(torch.nn.functional.linear(x, gate).float(), dim=-1).to(x.dtype)  # (..., K)
    low = torch.einsum("...i,kri->...kr", x, lora_a) * weights.unsqueeze(-1)  # (..., K, r)
    return torch.einsum("...kr,kor->...o", low, lora_b) * scaling


class LoraExpertsLinear(torch.nn.Module):
    """A frozen `nn.Linear` (`base_layer`) plus K LoRA experts (`lora_A`, `lora_B`) and their per-token
    softmax gate (`lora_gate`). `enabled = False` switches the experts off (the base function)."""

    def __init__(self, base_layer: torch.nn.Linear, num_experts: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        n_in, n_out = base_layer.in_features, base_layer.out_features
        dtype, device = base_layer.weight.dtype, base_layer.weight.device
        self.lora_gate = torch.nn.Linear(n_in, num_experts, bias=False, dtype=dtype, device=device)
        self.lora_A = torch.nn.Parameter(torch.empty(num_experts, rank, n_in, dtype=dtype, device=device))
        self.lora_B = torch.nn.Parameter(torch.zeros(num_experts, n_out, rank, dtype=dtype, device=device))
        # As LoRA: B = 0 so the model starts as the base. Each A_k is drawn on its own, so the experts get
        # different gradients from the first step; a zero gate starts as a uniform mixture.
        for a in self.lora_A.data:
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_gate.weight)
        self.scaling = alpha / rank
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if not self.enabled:
            return out
        return out + lora_mixture(x, self.lora_gate.weight, self.lora_A, self.lora_B, self.scaling)
