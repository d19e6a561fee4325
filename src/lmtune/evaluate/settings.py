"""What an evaluation's numbers depend on besides the weights, read from the run and written into every
result with a hash: the chat template, the system prompt, the stop tokens, the decoding settings and
every suite's settings (few-shot count, answer filter, task files). Results whose settings hashes
differ are not compared silently (`lmtune evaluate --compare`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmtune.config.deploy import EvaluateConfig
    from lmtune.config.run import WeightsSpec


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_sha256(folder: Path) -> str:
    """One hash over the folder's safetensors files (names and contents, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        digest.update(path.name.encode("utf-8"))
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def eval_settings(
    cfg: EvaluateConfig, tokenizer: PreTrainedTokenizerBase, stops: list[int], system_prompt: str | None
) -> dict[str, Any]:
    """The settings an evaluation's numbers depend on (besides the weights)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return {
        "chat_template_sha256": sha256_text(template),
        "system_prompt": system_prompt,
        "stop_tokens": [str(t) for t in tokenizer.convert_ids_to_tokens(stops)],
        "decoding": {
            "strategy": "greedy",
            "max_new_tokens": cfg.max_new_tokens,
            "batch_size": cfg.batch_size,
            "max_samples": cfg.max_samples,
        },
        "suites": [suite.model_dump(mode="json") for suite in cfg.all_suites()],
    }


def settings_hash(settings: dict[str, Any]) -> str:
    """A short hash of the settings (canonical JSON)."""
    return sha256_text(json.dumps(settings, sort_keys=True, ensure_ascii=False))[:16]


def settings_record(
    cfg: EvaluateConfig,
    tokenizer: PreTrainedTokenizerBase,
    stops: list[int],
    system_prompt: str | None,
    spec: WeightsSpec,
    weights: Path,
) -> dict[str, Any]:
    """`eval/settings.json`: the settings, their hash, and what was evaluated."""
    settings = eval_settings(cfg, tokenizer, stops, system_prompt)
    return {
        "settings_hash": settings_hash(settings),
        "settings": settings,
        "weights": {"path": str(weights), "sha256": weights_sha256(weights)},
        "base": spec.model.path,
    }


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The top-level settings keys (and suite entries) whose values differ."""
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k) != b.get(k)]
