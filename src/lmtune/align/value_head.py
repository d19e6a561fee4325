"""PPO's critic: a linear value head on the policy's last hidden state, and the policy forward pass that
gives both the completion's log-probs and its values.

Imports torch at module level: import this module only inside a stage's `run()`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmtune.align.logprobs import token_logps

VALUE_HEAD_FILE = "value_head.safetensors"


class ValueHead(torch.nn.Module):
    """V(s_t) = w . h_t + b, with h_t the policy's last hidden state at the token before t.

    Starts at zero (w = 0, b = 0): before it learns, V = 0 and the advantages are the plain
    reward-to-go, rather than noise from a random projection.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, T, H] hidden states -> [B, T] values (float32)."""
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1).float()


def hidden_size(model: torch.nn.Module) -> int:
    """The width of the policy's last hidden state (its config's `hidden_size`)."""
    config = getattr(model, "config", None)
    size = getattr(config, "hidden_size", None)
    if size is None:
        text = getattr(config, "text_config", None)
        size = getattr(text, "hidden_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__}: config has no hidden_size, cannot size a value head")
    return int(size)


def completion_logps_values(
    model: torch.nn.Module,
    head: ValueHead | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_length: int,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs and values of the completion tokens of `[prompt | completion]` rows.

    The prompt occupies the first P = `prompt_length` columns (left-padded), the completion the T
    columns after it. The logits and the hidden state at column P + t - 1 predict completion token t:

        logp_t = log softmax(logits[P + t - 1] / tau)[y_t],    V_t = head(h[P + t - 1])

    with tau the sampling temperature, so that logp is the log-probability under the distribution the
    tokens were sampled from (as TRL's PPO did). Only the last T + 1 columns' logits are computed
    (`logits_to_keep`): the vocabulary projection of the prompt would be wasted.

    Args:
        model: the policy (or its adapter-disabled view, or a reference copy).
        head: the value head, or None for log-probs only.
        input_ids: [B, P + T] prompt and completion ids.
        attention_mask: [B, P + T] 1 on real tokens (prompt padding and tokens after the end are 0).
        prompt_length: P.
        temperature: tau.

    Returns:
        (logps [B, T], values [B, T] or None).
    """
    completion = input_ids[:, prompt_length:]
    width = completion.size(1)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
        output_hidden_states=head is not None,
        use_cache=False,
        logits_to_keep=width + 1,
    )
    logits = out.logits[:, -(width + 1) : -1]
    logps = token_logps(logits.float() / temperature, completion, shift=False)
    if head is None:
        return logps, None
    return logps, head(out.hidden_states[-1][:, -(width + 1) : -1])


def save_value_head(head: ValueHead, path: Path) -> None:
    """Write the head's weights (safetensors) to `path`."""
    # deferred: safetensors only when this runs (keeps `import lmtune...` light)
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(path))


def load_value_head(head: ValueHead, path: Path) -> None:
    """Load weights written by `save_value_head` into `head` (every key must match)."""
    # deferred: safetensors only when this runs (keeps `import lmtune...` light)
    from safetensors.torch import load_file

    head.load_state_dict(load_file(str(path)))
