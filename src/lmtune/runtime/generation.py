"""Greedy, batched, left-padded generation from chat prompts (used by evaluation and the export check)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmtune.errors import LmtuneError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Message = dict[str, str]

# End-of-turn markers of common chat templates. A chat model ends a reply with one of these, which is
# often not the tokenizer's document-level eos (Llama 3 ends turns with <|eot_id|>, eos is <|end_of_text|>).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token id that ends an assistant turn: a known end-of-turn marker that the chat template
    writes and the vocabulary holds, else eos."""
    vocab = tokenizer.get_vocab()
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    for token in END_OF_TURN_TOKENS:
        if token in vocab and token in template:
            return int(vocab[token])
    if tokenizer.eos_token_id is None:
        raise LmtuneError(
            "tokenizer has neither an end-of-turn token nor an eos token: cannot stop generation"
        )
    return int(tokenizer.eos_token_id)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids that end generation: the end-of-turn token, plus eos when that differs."""
    ids = [end_of_turn_id(tokenizer)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    """The chat template applied to `messages`, ending with the assistant turn's opening."""
    if not tokenizer.chat_template:
        raise LmtuneError("the tokenizer has no chat template: cannot build generation prompts")
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return str(text)


@dataclass(frozen=True)
class Generation:
    """One greedy completion."""

    text: str
    """The completion decoded without special tokens."""
    token_ids: list[int]
    """The new tokens, up to and including the stop token when one was produced."""


def greedy_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    stop_ids: Sequence[int],
    desc: str | None = None,
) -> list[Generation]:
    """Greedy-decode each rendered prompt, `batch_size` at a time, left padded.

    Args:
        model: A causal LM (a PeftModel works: its active adapter is applied).
        tokenizer: Encodes the prompts (already templated, so no special tokens are added).
        prompts: Rendered prompt strings (see `render_prompt`).
        max_new_tokens: Generation budget per prompt.
        batch_size: Prompts per `generate` call.
        stop_ids: Token ids that end a completion.
        desc: Progress-bar label; None hides the bar.

    Returns:
        One `Generation` per prompt, in order.
    """
    # deferred: torch, tqdm, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
    )
    stops = set(stop_ids)
    device = next(model.parameters()).device
    results: list[Generation] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=desc is None):
        batch = list(prompts[start : start + batch_size])
        enc: Any = tokenizer(
            batch, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt"
        )
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=config)  # type: ignore[operator]
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        for row in new_tokens:
            cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
            ids = row[:cut]
            results.append(Generation(str(tokenizer.decode(ids, skip_special_tokens=True)), ids))
    return results
