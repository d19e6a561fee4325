"""Builds a run directory as the data and train stages leave it: config.yaml, prepared data (through
the real data stage, with the given conversations placed where the seeded split puts eval records),
and final weights (a perturbed LoRA adapter, or a perturbed full model), all on the tiny model.

Shared by tests/unit/evaluate and tests/unit/export (the latter puts this folder on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmtune.config.data import DataConfig, SourceConfig
from lmtune.config.deploy import EvaluateConfig, ExportConfig
from lmtune.config.methods.full import FullConfig
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.model import ModelConfig
from lmtune.config.run import RunConfig
from lmtune.runtime.rundir import RunDir

GSM8K_STYLE = [
    [
        {"role": "user", "content": "she has 3 apples and buys 4 more. how many apples?"},
        {"role": "assistant", "content": "3 + 4 = 7 apples.\n#### 7"},
    ],
    [
        {"role": "system", "content": "answer the question."},
        {"role": "user", "content": "he sold 1,200 books and then 34 more. how many books?"},
        {"role": "assistant", "content": "1,200 + 34 = 1,234.\n#### 1,234"},
    ],
    [
        {"role": "user", "content": "what is two less than one?"},
        {"role": "assistant", "content": "one minus two is -1.\n#### -1"},
    ],
    [
        {"role": "user", "content": "how much is half of five dollars?"},
        {"role": "assistant", "content": "5 / 2 = 2.50 dollars.\n#### $2.50"},
    ],
    [
        {"role": "user", "content": "they gave ten clips to each of two friends. how many clips?"},
        {"role": "assistant", "content": "10 * 2 = 20.\n#### 20"},
    ],
]

TEXT_STYLE = [
    [
        {"role": "user", "content": "what is the capital city of france?"},
        {"role": "assistant", "content": "Paris."},
    ],
    [
        {"role": "user", "content": "what is the river in paris?"},
        {"role": "assistant", "content": "the seine"},
    ],
]


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """Chat-templated ids with only the final assistant turn labelled (as the data stage masks it)."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert full.startswith(prompt)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids) :]
    return {"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)}


TRAIN_FILLER = [
    [{"role": "user", "content": f"how many {w}?"}, {"role": "assistant", "content": f"{n} {w}.\n#### {n}"}]
    for n, w in ((3, "cats"), (5, "dogs"), (8, "books"))
]


def prepare_data(cfg: RunConfig, tokenizer: Any, conversations: list[list[dict[str, str]]]) -> None:
    """Run the data stage on `conversations` + train filler, ordered so that the seeded split puts
    exactly `conversations` (in order) into the eval split."""
    from lmtune.data.prepare import prepare
    from lmtune.data.split import split_indices

    n = len(conversations) + len(TRAIN_FILLER)
    _, eval_idx = split_indices(n, cfg.data.eval_size, cfg.seed)
    assert len(eval_idx) == len(conversations)
    evals, train = iter(conversations), iter(TRAIN_FILLER)
    records = [next(evals) if i in eval_idx else next(train) for i in range(n)]
    source = Path(cfg.data.sources[0].path)
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("".join(json.dumps({"messages": m}) + "\n" for m in records))
    prepare(cfg.data, RunDir.for_config(cfg), tokenizer, seed=cfg.seed)


def perturbed_lora(base_dir: Path, scale: float, seed: int = 0) -> Any:
    """The tiny model wrapped with LoRA (r=4 on every linear layer), lora_B set to N(0, scale^2)."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(
        base, PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def perturbed_full(base_dir: Path, scale: float, seed: int = 0) -> Any:
    """The tiny model with N(0, scale^2) noise added to every weight."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def make_run(
    root: Path,
    base_dir: Path,
    *,
    method: str = "lora",
    scale: float = 0.5,
    conversations: list[list[dict[str, str]]] | None = None,
    evaluate: dict[str, Any] | None = None,
    export: dict[str, Any] | None = None,
    name: str = "run",
) -> RunDir:
    """A run directory with config, eval split and perturbed final weights (`method`: lora | full)."""
    from transformers import AutoTokenizer

    conversations = conversations if conversations is not None else GSM8K_STYLE
    source = SourceConfig(path=str(root / f"{name}-records.jsonl"), format="messages")
    cfg = RunConfig(
        name=name,
        output_dir=str(root),
        model=ModelConfig(path=str(base_dir)),
        data=DataConfig(sources=[source], eval_size=len(conversations)),
        method=LoraConfig(rank=4, alpha=8) if method == "lora" else FullConfig(),
        evaluate=EvaluateConfig(
            **{"max_samples": 8, "max_new_tokens": 8, "batch_size": 2, "general": None, **(evaluate or {})}
        ),
        export=ExportConfig(**{"check_max_new_tokens": 8, **(export or {})}),
    )
    rundir = RunDir.for_config(cfg)
    rundir.write_config(cfg)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    prepare_data(cfg, tokenizer, conversations)
    if method == "lora":
        model = perturbed_lora(base_dir, scale)
        model.save_pretrained(rundir.adapter)
        tokenizer.save_pretrained(rundir.adapter)
    else:
        model = perturbed_full(base_dir, scale)
        model.save_pretrained(rundir.model)
        tokenizer.save_pretrained(rundir.model)
    return rundir
