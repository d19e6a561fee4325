"""The GGUF check: each GGUF file, run in llama.cpp, against the checked merged folder in transformers.

For every file (lmtune.export.gguf writes them):
- **serving contract**: llama.cpp reads the export's chat template (sha256) from the file, and ends a
  generation at every stop token of the export's generation config;
- **tokenizer**: llama.cpp tokenizes each check prompt into exactly transformers' ids;
- **greedy tokens** on the check prompts (the same prompt ids on both sides): for f32/bf16/f16 they must be
  identical to the merged model's with its weights rounded to the file's float type (matrices rounded,
  norms kept in float32, as the converter stores them); for quantized types the agreement with the
  merged model is reported (prompts answered identically, and teacher-forced top-1 agreement);
- **perplexity** of the held-out conversations (prompt and reference answer, every position), and the
  mean **KL divergence** per token against the f16 file (llama.cpp's `--kl-divergence` measure) and
  against the merged model.

A contract or tokenizer difference, or a float file whose greedy tokens differ, fails the export
(ExportCheckError) after `export/gguf/gguf_check.json` is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.config.formats import GGUF_FLOAT_TYPES, GgufQuant
from lmtune.export.check import ExportCheckError
from lmtune.export.gguf_runtime import GgufModel
from lmtune.runtime.generation import Generator, Message, SamplingParams, render_prompt
from lmtune.runtime.load import causal_lm, folder_tokenizer
from lmtune.runtime.rundir import atomic_write_text

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class FileCheck:
    """How one GGUF file compares."""

    quant: str
    path: str
    size_bytes: int
    contract_differences: list[str]
    tokenizer_differences: list[int]
    """Indices of check prompts llama.cpp tokenizes differently."""
    reference: str
    """What the greedy tokens are compared with: `merged` or `merged rounded to <type>`."""
    greedy_identical: int
    greedy_total: int
    top1_agreement: float
    """Share of scored positions where the file's argmax token is the merged model's."""
    perplexity: float
    kl_vs_f16: float | None
    kl_vs_merged: float
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def float_type(self) -> bool:
        return self.quant in GGUF_FLOAT_TYPES

    def failures(self, tokenizer_must_match: bool = True) -> list[str]:
        found = [f"{self.quant}: {d}" for d in self.contract_differences]
        if self.tokenizer_differences and tokenizer_must_match:
            found.append(
                f"{self.quant}: llama.cpp tokenizes check prompts {self.tokenizer_differences} differently"
            )
        if self.float_type and self.greedy_identical != self.greedy_total:
            found.append(
                f"{self.quant}: greedy tokens differ from the {self.reference} model on "
                f"{self.greedy_total - self.greedy_identical} of {self.greedy_total} prompts"
            )
        return found


@dataclass
class GgufCheck:
    merged_perplexity: float
    files: list[FileCheck]
    tokens_scored: int

    def record(self) -> dict[str, Any]:
        return {
            "merged_perplexity": self.merged_perplexity,
            "tokens_scored": self.tokens_scored,
            "files": [asdict(f) for f in self.files],
        }


def check(
    merged: Path,
    files: dict[GgufQuant, Path],
    prompts: Sequence[Sequence[Message]],
    texts: Sequence[Sequence[Message]],
    max_new_tokens: int,
    out: Path,
    tokenizer_must_match: bool = True,
) -> GgufCheck:
    """Check every GGUF file in `files` against the merged folder; writes `out` (JSON).

    Args:
        merged: the checked merged folder the files were converted from.
        prompts: conversations whose greedy answers are compared.
        texts: whole conversations (with the reference answer) scored for perplexity and KL.

    Raises:
        ExportCheckError: a file changes the serving contract or (with `tokenizer_must_match`) the
            tokenization, or a float file's greedy tokens differ.
    """
    # deferred: torch/transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import GenerationConfig

    tokenizer = folder_tokenizer(merged)
    stops = _stop_ids(GenerationConfig.from_pretrained(merged).eos_token_id)
    prompt_ids = [
        tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts
    ]
    text_ids = [conversation_ids(tokenizer, t) for t in texts]
    models = {
        quant: GgufModel(path, context=_context(prompt_ids, text_ids, max_new_tokens))
        for quant, path in files.items()
    }
    try:
        reference = causal_lm(merged, torch.float32).eval()
        merged_answers = greedy_ids(reference, tokenizer, prompt_ids, max_new_tokens, stops)
        candidates: dict[str, Callable[[list[int]], torch.Tensor]] = {
            q: _logits_of(m) for q, m in models.items()
        }
        totals = scores(reference, candidates, text_ids)
        results = []
        for quant, model in models.items():
            if quant in GGUF_FLOAT_TYPES and quant != "f32":
                expected = greedy_ids(
                    _rounded(reference, quant), tokenizer, prompt_ids, max_new_tokens, stops
                )
                label = f"merged rounded to {quant}"
            else:
                expected, label = merged_answers, "merged"
            got = [model.greedy(ids, max_new_tokens, stops) for ids in prompt_ids]
            results.append(
                FileCheck(
                    quant=quant,
                    path=str(model.path),
                    size_bytes=model.path.stat().st_size,
                    contract_differences=_contract_differences(model, tokenizer, stops),
                    tokenizer_differences=[
                        i
                        for i, (conversation, ids) in enumerate(zip(prompts, prompt_ids, strict=True))
                        if model.tokenize(render_prompt(tokenizer, conversation)) != ids
                    ],
                    reference=label,
                    greedy_identical=sum(e == g for e, g in zip(expected, got, strict=True)),
                    greedy_total=len(prompt_ids),
                    top1_agreement=totals.mean(totals.top1, quant),
                    perplexity=totals.perplexity(quant),
                    kl_vs_f16=totals.mean(totals.kl_f16, quant) if "f16" in models else None,
                    kl_vs_merged=totals.mean(totals.kl_merged, quant),
                    answers=[
                        {"expected": tokenizer.decode(e), "got": tokenizer.decode(g)}
                        for e, g in zip(expected, got, strict=True)
                    ],
                )
            )
    finally:
        for model in models.values():
            model.close()
    result = GgufCheck(
        merged_perplexity=totals.perplexity("merged"),
        files=results,
        tokens_scored=totals.positions,
    )
    atomic_write_text(out, json.dumps(result.record(), indent=2) + "\n")
    failures = [f for r in results for f in r.failures(tokenizer_must_match)]
    for r in results:
        if r.tokenizer_differences and not tokenizer_must_match:
            log.warning(
                "%s: llama.cpp tokenizes check prompts %s differently", r.path, r.tokenizer_differences
            )
    if failures:
        raise ExportCheckError(
            f"{out.parent}: the GGUF export does not reproduce the model: {'; '.join(failures)}"
        )
    return result


@dataclass
class Scores:
    """Totals over every next-token position of the scored texts (see `scores`)."""

    positions: int = 0
    nll: dict[str, float] = field(default_factory=dict)
    top1: dict[str, int] = field(default_factory=dict)
    kl_f16: dict[str, float] = field(default_factory=dict)
    kl_merged: dict[str, float] = field(default_factory=dict)

    def perplexity(self, name: str) -> float:
        return math.exp(self.nll[name] / max(self.positions, 1))

    def mean(self, totals: dict[str, Any], name: str) -> float:
        return float(totals[name]) / max(self.positions, 1)


def scores(
    reference: PreTrainedModel,
    candidates: dict[str, Callable[[list[int]], torch.Tensor]],
    texts: list[list[int]],
) -> Scores:
    """Perplexity (`merged` and each candidate), and each candidate's top-1 agreement with `reference`
    and KL divergence from it (and from the candidate named `f16`, when there is one), over every
    next-token position of `texts`. A candidate maps token ids to logits at every position."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    totals = Scores()
    for ids in texts:
        if len(ids) < 2:
            continue
        target = torch.tensor(ids[1:])
        with torch.inference_mode():
            merged = torch.log_softmax(reference(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
        logprobs = {
            name: torch.log_softmax(logits(ids)[:-1].float(), -1) for name, logits in candidates.items()
        }
        totals.positions += len(ids) - 1
        _add(totals.nll, "merged", float(-merged.gather(1, target[:, None]).sum()))
        for name, lp in logprobs.items():
            _add(totals.nll, name, float(-lp.gather(1, target[:, None]).sum()))
            _add(totals.top1, name, int((lp.argmax(-1) == merged.argmax(-1)).sum()))
            _add(totals.kl_merged, name, _kl(merged, lp))
            if "f16" in logprobs:
                _add(totals.kl_f16, name, _kl(logprobs["f16"], lp))
    return totals


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """Sum over positions of KL(P || Q), from log-probabilities."""
    return float((p.exp() * (p - q)).sum())


def _add(totals: dict[str, Any], key: str, value: float) -> None:
    totals[key] = totals.get(key, 0) + value


def _logits_of(model: GgufModel) -> Callable[[list[int]], torch.Tensor]:
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    return lambda ids: torch.from_numpy(model.logits(ids))


def _rounded(model: PreTrainedModel, quant: str) -> PreTrainedModel:
    """A copy of `model` with every matrix rounded to `quant`'s float type (computing in float32).

    Rounding each matrix product's input as well (as ggml's CPU kernels convert activations to the
    weights' type) was tried and matched llama.cpp's bf16 answers less often on SmolLM2 (14 of 16
    prompts, against 15 of 16), so the reference rounds the weights only."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import copy

    import torch

    dtype = {"f16": torch.float16, "bf16": torch.bfloat16}[quant]
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in rounded.parameters():
            if parameter.dim() >= 2:
                parameter.copy_(parameter.to(dtype).float())
    return rounded


def greedy_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    stops: list[int],
) -> list[list[int]]:
    """Greedy answer ids, one unpadded prompt at a time (as llama.cpp runs them)."""
    generator = Generator(model, tokenizer, stops)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0)
    return [c.token_ids for c in generator.generate(prompt_ids, params, batch_size=1)]


def _contract_differences(
    model: GgufModel, tokenizer: PreTrainedTokenizerBase, stops: list[int]
) -> list[str]:
    found = []
    metadata = model.metadata
    template = str(getattr(tokenizer, "chat_template", "") or "")
    in_file = metadata.get("tokenizer.chat_template", "")
    if _sha(in_file) != _sha(template):
        found.append(f"chat template: export sha256 {_sha(template)[:12]}, GGUF {_sha(in_file)[:12]}")
    for stop in stops:
        if not model.ends_generation(stop):
            found.append(
                f"stop token {stop} ({tokenizer.convert_ids_to_tokens(stop)}) does not end generation"
            )
    return found


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stop_ids(eos: int | list[int] | None) -> list[int]:
    return eos if isinstance(eos, list) else [eos] if eos is not None else []


def conversation_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> list[int]:
    text = str(tokenizer.apply_chat_template(list(messages), tokenize=False))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _context(prompts: list[list[int]], texts: list[list[int]], max_new_tokens: int) -> int:
    longest = max([len(p) + max_new_tokens for p in prompts] + [len(t) for t in texts] + [16])
    return 1 << (longest - 1).bit_length()  # a power of two that holds the longest sequence
