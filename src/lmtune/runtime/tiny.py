"""A tiny random Llama (and tiny random MoE models: Mixtral, Qwen3-MoE) + a BPE tokenizer trained
in-process: product code for tests and smoke runs.

Builds in well under a second after imports and never touches the network. The tokenizer uses a
ChatML template (the same turn markers as SmolLM2) with `<|im_end|>` as eos and pad.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import (
        LlamaForCausalLM,
        MixtralForCausalLM,
        PreTrainedModel,
        PreTrainedTokenizerFast,
        Qwen3MoeForCausalLM,
    )

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_WORDS = [
    "the",
    "a",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "apples",
    "books",
    "cats",
    "dogs",
    "friends",
    "clips",
    "sold",
    "bought",
    "has",
    "had",
    "gave",
    "how",
    "many",
    "much",
    "more",
    "less",
    "than",
    "total",
    "each",
    "day",
    "week",
    "she",
    "he",
    "they",
    "we",
    "you",
    "answer",
    "question",
    "is",
    "are",
    "was",
    "were",
    "and",
    "or",
    "but",
    "so",
    "if",
    "then",
    "what",
    "why",
    "who",
    "where",
    "when",
    "user",
    "assistant",
    "system",
    "helpful",
    "model",
    "data",
    "train",
    "test",
    "loss",
    "paris",
    "france",
    "capital",
    "city",
    "river",
    "water",
    "numbers",
]


def _corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        nums = [str(rng.randint(0, 999)) for _ in range(rng.randint(0, 3))]
        lines.append(" ".join(words + nums) + rng.choice([".", "?", "!", " #### 42"]))
    return lines


def tiny_shape(vocab_size: int, eos_token_id: int) -> dict[str, Any]:
    """The config fields every tiny architecture shares: hidden 64, MLP 128, 2 layers, 4 heads, 2 KV
    heads, untied embeddings, bos 1, eos = pad = `eos_token_id`."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
    }


def build_tokenizer(vocab_size: int = 512, base: bool = False) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on a generated corpus and wrap it with a ChatML template.

    `base`: a base model's tokenizer instead: no chat template and no turn markers, `<|endoftext|>` as
    bos, eos and unk (as a GPT-2 style base model has), no pad."""
    # deferred: tokenizers, transformers only when this runs (keeps `import lmtune...` light)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS[:1] if base else SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    if base:
        end = SPECIAL_TOKENS[0]
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=end, eos_token=end, unk_token=end)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_model(vocab_size: int, seed: int = 0, eos_token_id: int = 2) -> LlamaForCausalLM:
    """A random-init Llama: hidden 64, 2 layers, 4 heads, 2 KV heads."""
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**tiny_shape(vocab_size, eos_token_id))
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def save_tiny(path: str | Path, seed: int = 0, base: bool = False) -> Path:
    """Build the tiny model + tokenizer and save both as a standard folder; returns the folder.

    `base`: a base model instead of a chat model: its tokenizer has no chat template and no turn markers
    (`build_tokenizer(base=True)`), eos `<|endoftext|>`."""
    return _save(path, build_model, seed, base)


def build_mixtral(
    vocab_size: int, seed: int = 0, eos_token_id: int = 2, num_experts: int = 4, top_k: int = 2
) -> MixtralForCausalLM:
    """A random-init Mixtral: the tiny Llama's shape (hidden 64, 2 layers, 4 heads, 2 KV heads) with a
    sparse MoE block of `num_experts` experts (intermediate 128), `top_k` routed per token."""
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        **tiny_shape(vocab_size, eos_token_id), num_local_experts=num_experts, num_experts_per_tok=top_k
    )
    torch.manual_seed(seed)
    return MixtralForCausalLM(config)


def build_qwen_moe(
    vocab_size: int, seed: int = 0, eos_token_id: int = 2, num_experts: int = 4, top_k: int = 2
) -> Qwen3MoeForCausalLM:
    """A random-init Qwen3-MoE: hidden 64, 2 layers, 4 heads, 2 KV heads, `num_experts` experts
    (intermediate 64) with `top_k` routed per token and normalised top-k weights (as Qwen3-30B-A3B)."""
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        **tiny_shape(vocab_size, eos_token_id),
        moe_intermediate_size=64,
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        norm_topk_prob=True,
    )
    torch.manual_seed(seed)
    return Qwen3MoeForCausalLM(config)


def save_tiny_moe(path: str | Path, arch: Literal["mixtral", "qwen3_moe"], seed: int = 0) -> Path:
    """Build a tiny random MoE model (`build_mixtral` or `build_qwen_moe`) + the tiny tokenizer and save
    both as a standard folder; returns the folder."""
    return _save(path, build_mixtral if arch == "mixtral" else build_qwen_moe, seed)


def _save(path: str | Path, build: Callable[..., PreTrainedModel], seed: int, base: bool = False) -> Path:
    """`build(vocab_size, seed=, eos_token_id=)` with the tiny tokenizer, eos = `<|im_end|>` (base:
    `<|endoftext|>`), saved with the tokenizer and a generation config that stops there."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import GenerationConfig

    out = Path(path)
    tok = build_tokenizer(base=base)
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    assert isinstance(eos, int)
    model = build(len(tok), seed=seed, eos_token_id=eos)
    model.generation_config = GenerationConfig(
        eos_token_id=eos, pad_token_id=eos, bos_token_id=tok.bos_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
