"""A quantized transformers folder from the checked merged folder, and its check:
bitsandbytes 4/8-bit (`lmtune export RUN --format bnb --quant nf4|fp4|int8`) or torchao's int8
weight-only (`--format torchao`).

write_and_check(merged, out, fmt, prompts, texts, max_new_tokens)
  -> load the merged folder with the library quantizing every linear layer (transformers'
     `quantization_config`), save it with its tokenizer and generation config:
     `AutoModelForCausalLM.from_pretrained(out)` loads it quantized, without lmtune
  -> reload it from disk: its greedy answers must be identical to the in-memory quantized model's (the
     folder holds exactly that model), and its serving contract (chat template, EOS/pad/stop tokens,
     generation config) the merged folder's
  -> agreement with the merged model (greedy answers identical, teacher-forced top-1), perplexity and KL
     divergence against the merged model (lmtune.export.gguf_check.scores): `quantized_check.json`
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

from lmtune.config.formats import BnbFormat, QuantizedFormat, TorchaoFormat
from lmtune.export.check import ExportCheckError
from lmtune.export.contract import contract_differences, serving_contract
from lmtune.export.gguf_check import conversation_ids, greedy_ids, scores
from lmtune.runtime.generation import Message, render_prompt
from lmtune.runtime.load import causal_lm, folder_tokenizer
from lmtune.runtime.quantize import bnb_config, exact_cpu_kernels
from lmtune.runtime.rundir import atomic_write_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def write_and_check(
    merged: Path,
    out: Path,
    fmt: QuantizedFormat,
    prompts: Sequence[Sequence[Message]],
    texts: Sequence[Sequence[Message]],
    max_new_tokens: int,
) -> dict[str, Any]:
    """Write the quantized folder `out` and check it; returns the record written to
    `quantized_check.json`.

    Raises:
        ExportCheckError: the reloaded folder answers differently from the quantized model it was saved
            from, or its serving contract differs from the merged folder's.
    """
    # deferred: torch/transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import GenerationConfig

    tokenizer = folder_tokenizer(merged)
    generation = GenerationConfig.from_pretrained(merged)
    quantized = _quantized(merged, fmt, torch)
    quantized.save_pretrained(out)
    tokenizer.save_pretrained(out)
    generation.save_pretrained(out)

    stops = (
        generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    )
    prompt_ids = [
        tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts
    ]
    before = greedy_ids(quantized, tokenizer, prompt_ids, max_new_tokens, stops)
    del quantized
    reloaded = causal_lm(out, torch.float32).eval()
    exact_cpu_kernels(reloaded)
    after = greedy_ids(reloaded, tokenizer, prompt_ids, max_new_tokens, stops)
    reference = causal_lm(merged, torch.float32).eval()
    merged_answers = greedy_ids(reference, tokenizer, prompt_ids, max_new_tokens, stops)
    text_ids = [conversation_ids(tokenizer, t) for t in texts]

    def logits(ids: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return reloaded(input_ids=torch.tensor([ids])).logits[0].float()

    totals = scores(reference, {fmt.scheme: logits}, text_ids)
    differences = contract_differences(
        serving_contract(tokenizer, generation),
        serving_contract(folder_tokenizer(out), GenerationConfig.from_pretrained(out)),
    )
    record = {
        "library": fmt.type,
        "scheme": fmt.scheme,
        "path": str(out),
        "size_bytes": sum(f.stat().st_size for f in out.glob("*.safetensors")),
        "reload_identical": before == after,
        "contract_differences": differences,
        "greedy_identical_to_merged": sum(a == m for a, m in zip(after, merged_answers, strict=True)),
        "greedy_total": len(prompt_ids),
        "top1_agreement": totals.mean(totals.top1, fmt.scheme),
        "merged_perplexity": totals.perplexity("merged"),
        "perplexity": totals.perplexity(fmt.scheme),
        "kl_vs_merged": totals.mean(totals.kl_merged, fmt.scheme),
        "tokens_scored": totals.positions,
        "answers": [
            {"merged": tokenizer.decode(m), "quantized": tokenizer.decode(a)}
            for m, a in zip(merged_answers, after, strict=True)
        ],
    }
    atomic_write_text(out / "quantized_check.json", json.dumps(record, indent=2) + "\n")
    failures = [f"{out}: {d}" for d in differences]
    if before != after:
        failures.append(f"{out}: the reloaded folder answers differently from the quantized model it holds")
    if failures:
        raise ExportCheckError("; ".join(failures))
    return record


def _quantized(merged: Path, fmt: QuantizedFormat, torch: Any) -> PreTrainedModel:
    model = causal_lm(merged, torch.float32, quantization_config=quantization_config(fmt, torch.float32))
    exact_cpu_kernels(model)
    return model.eval()


def quantization_config(fmt: QuantizedFormat, dtype: Any) -> Any:
    """transformers' quantization config for `fmt`."""
    match fmt:
        case BnbFormat():
            return bnb_config(fmt.quantization, dtype)
        case TorchaoFormat():
            # deferred: torchao is an optional library, imported only for this format
            from torchao.quantization import Int8WeightOnlyConfig
            from transformers import TorchAoConfig

            return TorchAoConfig(Int8WeightOnlyConfig())
        case _:
            assert_never(fmt)
