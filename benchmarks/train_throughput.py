"""GPU training throughput and peak memory: plain HF + PEFT, the best peer that installs offline, and
lmtune, side by side in one run on one GPU (`make bench-gpu`).

Method (as the reference baselines measured it): random-weight Llama-shaped models (Llama-3.2-1B and
Llama-3.1-8B shapes) built in bf16 on the GPU, SDPA attention, random token batches of `seq` tokens
(the same 4 batches, cycled, for every variant); tokens/s = batch x seq / median step time after the
warm-up steps; peak = `torch.cuda.max_memory_allocated()` over the training steps. LoRA r16 alpha 32
on q,k,v,o,gate,up,down. Each (regime, variant) runs in a fresh process, so one variant's kernel
patches never reach another.

Variants:
  hf      a plain loop (forward under bf16 autocast, backward, fused AdamW step, lr 1e-5) with
          `torch.cuda.synchronize()` around each step, on PEFT defaults: adapters in float32 with every
          adapter input up-cast; QLoRA as PEFT documents it (`prepare_model_for_kbit_training`: norms,
          embeddings and head up-cast to float32).
  peer    the same loop on the best peer that installs offline: Liger kernels (RoPE, RMSNorm, SwiGLU,
          fused linear cross-entropy) patched into the model classes + bf16 adapters (no up-cast),
          QLoRA without the float32 up-casts.
  lmtune  `lmtune train`'s own path, `lmtune.train.sft.run(cfg)`: the random base is saved as a model
          folder (`model.path`; QLoRA: `model.quantization: nf4`, quantized on load as the product
          does), the same token rows are written as the run's prepared data (what `load_or_prepare`
          reuses, laid out so that the Trainer's seeded shuffle feeds the 4 batches in the peers'
          order, which a forward pre-hook checks), and the run goes through the data stage, the
          method's preparation, the preflight, transformers' Trainer with lmtune's collator, callbacks
          (metrics.jsonl, manifests, NaN guard) and optimizer, `trainer.liger: auto`, bf16 on CUDA,
          lr 1e-5 constant, and the final save. A Trainer callback times each step (end to end: from
          one optimizer step's end to the next, so data loading, collation and lmtune's callbacks
          count) and resets / reads the peak memory around the training; the step losses are read
          with a forward hook. Also reported: the preflight's memory estimate against the measured peak.
          `first_step_s` is from calling `run` (tokenizer, data, model load from disk, preflight) to
          the end of the first optimizer step; `build_s` includes saving the random model folder.

FLOPs per token (no credit for recomputation), N = weights multiplied per token incl. the LM head:
  full 6N + 12 L s d;  LoRA 4N + 12 L s d + 6 N_lora;  MFU = tokens/s x FLOPs/token / 989e12 (H100).

Usage:
  python benchmarks/train_throughput.py                       # every regime, every variant
  python benchmarks/train_throughput.py --regimes 1b-lora 1b-full --steps 8
  python benchmarks/train_throughput.py --regimes tiny-lora --device cpu   # smoke run, no GPU
  python benchmarks/train_throughput.py --recheck-estimates benchmarks/results/train_throughput.json
      # the current memory estimate of each measured LoRA / full regime (model built on the meta
      # device, no GPU needed) against the peak that run measured
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # trainer_support, beside this script

PEAK_FLOPS = 989e12
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VARIANTS = ("hf", "peer", "lmtune")
LR = 1e-5
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "train_throughput.json"

SHAPES: dict[str, dict[str, Any]] = {
    "1b": {  # Llama-3.2-1B
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
        "head_dim": 64,
    },
    "8b": {  # Llama-3.1-8B
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "head_dim": 128,
    },
    "tiny": {  # smoke runs on CPU
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": 512,
        "tie_word_embeddings": True,
        "head_dim": 16,
    },
}


@dataclasses.dataclass(frozen=True)
class Regime:
    shape: str
    mode: str  # lora | qlora | full
    batch: int
    checkpointing: bool
    seq: int = 2048


REGIMES = {
    "1b-lora": Regime("1b", "lora", 4, False),
    "8b-lora": Regime("8b", "lora", 2, False),
    "8b-lora-ckpt": Regime("8b", "lora", 1, True),
    "1b-qlora": Regime("1b", "qlora", 8, True),
    "8b-qlora": Regime("8b", "qlora", 4, True),
    "1b-full": Regime("1b", "full", 4, False),
    "tiny-lora": Regime("tiny", "lora", 2, False, seq=64),
    "tiny-full": Regime("tiny", "full", 2, True, seq=64),
    "tiny-qlora": Regime("tiny", "qlora", 2, True, seq=64),
}


def flops_per_token(regime: Regime, rank: int = 16) -> float:
    c = SHAPES[regime.shape]
    d, layers, ffn, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
    dq = c["num_attention_heads"] * c["head_dim"]
    dkv = c["num_key_value_heads"] * c["head_dim"]
    n_mm = layers * (d * dq + 2 * d * dkv + dq * d + 3 * d * ffn) + d * vocab
    attn = 12 * layers * regime.seq * dq
    if regime.mode == "full":
        return 6 * n_mm + attn
    n_lora = layers * rank * ((d + dq) + 2 * (d + dkv) + (dq + d) + 3 * (d + ffn))
    return 4 * n_mm + attn + 6 * n_lora


def build_base(regime: Regime, device: str, dtype: Any = None) -> Any:
    """The random-weight model, in bf16 on CUDA (float32 on CPU) unless `dtype` says; 4-bit NF4 linear
    layers for QLoRA. On the meta device: shapes and dtypes only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **SHAPES[regime.shape],
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        use_cache=False,
        attention_bias=False,
        mlp_bias=False,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(previous)
    if regime.mode == "qlora":
        to_nf4(model, dtype)
    return model


def to_nf4(model: Any, dtype: Any) -> None:
    """Replace the decoder's linear layers by bitsandbytes NF4 layers (double quantisation, compute in
    `dtype`), as `from_pretrained(quantization_config=...)` stores them; marks the model 4-bit for PEFT."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=False,
                    compute_dtype=dtype,
                    compress_statistics=True,
                    quant_type="nf4",
                    device="meta",
                )
                q.weight = bnb.nn.Params4bit(
                    child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
                ).to(child.weight.device)
                setattr(parent, name, q)
                del child
    model.is_loaded_in_4bit = True
    torch.cuda.empty_cache()


def lmtune_method(regime: Regime) -> Any:
    """lmtune's method config for the regime: full fine-tuning, or LoRA r16 alpha 32 on the seven
    projections (QLoRA: the same LoRA on the NF4 base)."""
    from lmtune.config.methods.full import FullConfig
    from lmtune.config.methods.lora import LoraConfig

    return FullConfig() if regime.mode == "full" else LoraConfig(rank=16, alpha=32, target_modules=TARGETS)


def prepare(model: Any, regime: Regime, variant: str) -> Any:
    """A peer variant's preparation of the base (`hf` or `peer`): adapters, checkpointing. (lmtune
    prepares its own inside `sft.run`: `run_lmtune`.)"""
    if regime.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if regime.mode != "full":
            model.enable_input_require_grads()
    if regime.mode == "full":
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    lora = PeftLoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, bias="none", target_modules=TARGETS, task_type="CAUSAL_LM"
    )
    if variant == "hf":
        if regime.mode == "qlora":
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=regime.checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        return get_peft_model(model, lora)
    model = get_peft_model(model, lora, autocast_adapter_dtype=False)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.to(next(model.get_base_model().parameters()).dtype)
    return model


def random_batches(regime: Regime, device: str) -> list[Any]:
    """The 4 token batches every variant trains on, cycled (seeded; drawn on `device`)."""
    import torch

    vocab = SHAPES[regime.shape]["vocab_size"]
    generator = torch.Generator(device=device).manual_seed(1)
    return [
        torch.randint(0, vocab, (regime.batch, regime.seq), device=device, generator=generator)
        for _ in range(4)
    ]


def run_one(
    name: str, variant: str, warmup: int, steps: int, device: str, workdir: Path | None = None
) -> dict[str, Any]:
    """One regime in one variant, in this process. `workdir` (lmtune only): where the model folder and
    the run directory go (kept); None: a temporary folder, removed afterwards."""
    if variant == "lmtune":
        return run_lmtune(name, warmup, steps, device, workdir)
    import torch

    regime = REGIMES[name]
    record: dict[str, Any] = {"regime": name, "variant": variant, **dataclasses.asdict(regime)}
    cuda = device == "cuda"
    if variant == "peer" and cuda:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(
            rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=True
        )
    started = time.perf_counter()
    base = build_base(regime, device)
    record["build_s"] = time.perf_counter() - started
    started = time.perf_counter()  # from here: "command to first optimizer step", model load excluded
    model = prepare(base, regime, variant)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, fused=cuda)
    record["trainable_params"] = sum(p.numel() for p in params)
    record["trainable_dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    batches = random_batches(regime, device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(warmup + steps):
        batch = batches[step % len(batches)]
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
        if step == 0:
            record["first_step_s"] = time.perf_counter() - started
    record.update(_throughput(regime, times[warmup:]), status="ok", losses=losses)
    if cuda:
        record["peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return record


def _throughput(regime: Regime, timed: list[float]) -> dict[str, float]:
    median = statistics.median(timed)
    tokens_per_s = regime.batch * regime.seq / median
    return {
        "step_s": median,
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * flops_per_token(regime) / PEAK_FLOPS,
    }


def lmtune_config(regime: Regime, total_steps: int, device: str, model_dir: Path, work: Path) -> Any:
    """The RunConfig `lmtune train` gets for the regime: the saved random model, the regime's batch and
    sequence, explicit gradient checkpointing, lr 1e-5 constant (as the peers' loop), the loss logged
    at every step, no checkpoint before the end, Liger and dtype left to the product's `auto`."""
    from lmtune.config.loader import build
    from lmtune.config.run import RunConfig

    source = work / "source.jsonl"  # what `data.sources` names; the prepared split in the run dir is used
    source.write_text(json.dumps({"text": "random token rows: see the run's data/ folder"}) + "\n")
    return build(
        RunConfig,
        {
            "name": "lmtune",
            "output_dir": str(work / "runs"),
            "model": {"path": str(model_dir), "quantization": "nf4" if regime.mode == "qlora" else "none"},
            "data": {
                "sources": [{"path": str(source), "format": "text"}],
                "max_length": regime.seq,
                "truncation": "truncate",  # full-length rows: the preflight allows a span ending there
                "eval_size": 0,
            },
            "method": lmtune_method(regime).model_dump(mode="json"),
            "trainer": {
                "max_steps": total_steps,
                "batch_size": regime.batch,
                "learning_rate": LR,
                "lr_scheduler": "constant",
                "warmup_steps": 0,
                "logging_steps": 1,
                "save_steps": total_steps + 1,
                "gradient_checkpointing": regime.checkpointing,
                "device": device,
            },
        },
    )


def save_base(regime: Regime, device: str, out: Path) -> Path:
    """The peers' random base (same seed, same weights; QLoRA: unquantized, `model.quantization`
    quantizes it on load) saved as a model folder with a small ChatML tokenizer (its ids lie within
    every shape's vocabulary; the rows are token ids, no text is tokenized)."""
    import torch

    from lmtune.runtime.tiny import build_tokenizer

    model = build_base(
        dataclasses.replace(regime, mode="lora" if regime.mode == "qlora" else regime.mode), device
    )
    model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def write_prepared(cfg: Any, batches: list[Any]) -> list[list[list[int]]]:
    """Write the peers' batches as the run's prepared data (train split, empty eval split, stats.json
    with the key `load_or_prepare` checks), laid out so that the Trainer's seeded shuffle yields batch
    `step % 4` at each step (`trainer_support.trainer_layout`). Returns the planned batches, one per
    step, as lists of rows."""
    from datasets import Dataset, Features, Sequence, Value
    from trainer_support import trainer_layout

    from lmtune.data.prepare import prepare_key
    from lmtune.runtime.load import load_tokenizer
    from lmtune.runtime.rundir import RunDir

    cpu = [b.cpu().tolist() for b in batches]
    planned = [cpu[step % len(cpu)] for step in range(cfg.trainer.max_steps)]
    rows = trainer_layout([row for batch in planned for row in batch], cfg.seed)
    ints = Sequence(Value("int64"))
    features = Features({"input_ids": ints, "labels": ints, "attention_mask": ints})
    data = RunDir.for_config(cfg).data
    columns = {"input_ids": rows, "labels": rows, "attention_mask": [[1] * len(r) for r in rows]}
    Dataset.from_dict(columns, features=features).save_to_disk(str(data / "train"))
    Dataset.from_dict({k: [] for k in features}, features=features).save_to_disk(str(data / "eval"))
    stats = {
        "prepare_key": prepare_key(cfg.data, load_tokenizer(cfg.model), seed=cfg.seed),
        "split": {"train": len(rows), "eval": 0},
        "written_by": "benchmarks/train_throughput.py (random token rows)",
    }
    (data / "stats.json").write_text(json.dumps(stats, indent=2))
    return planned


def step_probe(cfg: Any, cuda: bool) -> Any:
    """A Trainer callback (passed to `sft.run` as a caller's callback): `trainer_support.FedBatches`
    (each step's rows and loss, through hooks on the model) that also times every optimizer step,
    resets and reads the peak CUDA memory around the training, and notes the product's collator,
    optimizer, Liger setting, the model's forward hooks (lmtune's NaN guard has one) and the
    preflight's memory estimate for the step."""
    import torch
    from trainer_support import FedBatches

    from lmtune.train.preflight import estimate_memory, liger_on

    checkpointing = cfg.trainer.gradient_checkpointing is True  # the regime's, set explicitly

    class StepProbe(FedBatches):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[float] = []
            self.info: dict[str, Any] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model = kwargs["model"]
            tokens = cfg.trainer.batch_size * cfg.data.max_length
            estimate = estimate_memory(model, tokens, checkpointing, fused_loss=liger_on(cfg))
            self.info = {
                "estimate_GiB": estimate.total / 2**30,
                "collator": type(kwargs["train_dataloader"].collate_fn).__name__,
                "optimizer": type(kwargs["optimizer"]).__name__,
                "liger": liger_on(cfg),
                "forward_hooks": sorted(
                    type(getattr(h, "__self__", h)).__name__ for h in model._forward_hooks.values()
                ),
            }
            super().on_train_begin(args, state, control, **kwargs)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.marks = [time.perf_counter()]

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                self.info["peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
            super().on_train_end(args, state, control, **kwargs)

    return StepProbe()


def run_lmtune(
    name: str, warmup: int, steps: int, device: str, workdir: Path | None = None
) -> dict[str, Any]:
    """The lmtune variant: `lmtune.train.sft.run` (what `lmtune train` runs) on the peers' model and
    batches, timed by `step_probe`."""
    import tempfile

    from lmtune.runtime.records import TrainLog
    from lmtune.runtime.rundir import RunDir
    from lmtune.train import sft

    regime = REGIMES[name]
    record: dict[str, Any] = {"regime": name, "variant": "lmtune", **dataclasses.asdict(regime)}
    cuda = device == "cuda"
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        model_dir = save_base(regime, device, work / "model")
        record["build_s"] = time.perf_counter() - started
        cfg = lmtune_config(regime, warmup + steps, device, model_dir, work)
        planned = write_prepared(cfg, random_batches(regime, device))
        probe = step_probe(cfg, cuda)
        started = time.perf_counter()
        result = sft.run(cfg, callbacks=[probe])
        record["run_s"] = time.perf_counter() - started
        marks = probe.marks
        times = [b - a for a, b in itertools.pairwise(marks)]
        rundir = RunDir.for_config(cfg)
        logged = [r for r in rundir.read_metrics() if isinstance(r, TrainLog)]
        record.update(probe.info)
        record.update(_throughput(regime, times[warmup:]), status="ok")
        record.update(
            trainable_params=probe.trainable_params,
            trainable_dtypes=probe.trainable_dtypes,
            first_step_s=marks[1] - started,
            losses=probe.loss_values(),
            batches_as_planned=probe.as_planned(planned),
            steps_done=result.steps,
            logged_steps=[r.step for r in logged],
            run_dir=str(rundir.root) if workdir is not None else None,
        )
    if "peak_GiB" in record and "estimate_GiB" in record:
        record["estimate_ratio"] = record["estimate_GiB"] / record["peak_GiB"]
    return record


def recheck_estimates(results: Path) -> list[str]:
    """The current `estimate_memory` of each lmtune LoRA / full record in `results` against its measured
    peak. The model is built on the meta device (shapes and dtypes only), as bf16 + Liger on CUDA."""
    import torch

    from lmtune import methods
    from lmtune.train.preflight import estimate_memory

    lines = []
    for run in json.loads(results.read_text())["runs"]:
        for r in run["records"]:
            if r["variant"] != "lmtune" or r["mode"] == "qlora" or r["status"] != "ok":
                continue
            regime = REGIMES[r["regime"]]
            model = methods.prepare(build_base(regime, "meta", torch.bfloat16), lmtune_method(regime))
            total = estimate_memory(
                model, regime.batch * regime.seq, regime.checkpointing, fused_loss=True
            ).total
            lines.append(
                f"{r['regime']:13s} estimate {total / 2**30:6.2f} GiB  measured {r['peak_GiB']:6.2f} GiB  "
                f"ratio {total / 2**30 / r['peak_GiB']:.3f}"
            )
    return lines


def run_isolated(name: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """`run_one` in a fresh process; a crash or out-of-memory becomes a record with its reason."""
    cmd = [sys.executable, __file__, "--one", name, variant, "--warmup", str(args.warmup)]
    cmd += ["--steps", str(args.steps), "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RECORD "):
            return dict(json.loads(line.removeprefix("RECORD ")))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    status = "OOM" if any("OutOfMemory" in line for line in tail) else "error"
    return {"regime": name, "variant": variant, "status": status, "error": " | ".join(tail)[-400:]}


def summary(records: list[dict[str, Any]]) -> list[str]:
    """One line per record, and lmtune's ratios to the other two variants."""
    lines = []
    by_key = {(r["regime"], r["variant"]): r for r in records}
    for r in records:
        if r["status"] != "ok":
            lines.append(f"{r['regime']:13s} {r['variant']:7s} {r['status']}: {r.get('error', '')[:160]}")
            continue
        line = (
            f"{r['regime']:13s} {r['variant']:7s} {r['tokens_per_s']:9.0f} tok/s  "
            f"peak {r.get('peak_GiB', float('nan')):6.2f} GiB  MFU {100 * r['mfu']:5.1f}%  "
            f"first step {r['first_step_s']:5.1f} s"
        )
        if r["variant"] == "lmtune":
            for other in ("hf", "peer"):
                o = by_key.get((r["regime"], other))
                if o and o["status"] == "ok":
                    line += f"  x{r['tokens_per_s'] / o['tokens_per_s']:.2f} vs {other}"
            if "estimate_ratio" in r:
                line += f"  estimate/peak {r['estimate_ratio']:.3f}"
            if not r.get("batches_as_planned", True):
                line += "  (Trainer fed other batches than the peers: no loss parity)"
        lines.append(line)
    return lines


def loss_parity(records: list[dict[str, Any]], regime: str) -> float | None:
    """Largest relative difference between lmtune's and HF + PEFT's losses on the same batches."""
    by_variant = {r["variant"]: r for r in records if r["regime"] == regime and r["status"] == "ok"}
    if "hf" not in by_variant or "lmtune" not in by_variant:
        return None
    if not by_variant["lmtune"].get("batches_as_planned", True):
        return None  # the Trainer fed other batches than the peers': no like-for-like comparison
    pairs = zip(by_variant["hf"]["losses"], by_variant["lmtune"]["losses"], strict=True)
    return max(abs(b - a) / abs(a) for a, b in pairs)


def environment(device: str) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    env = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }
    try:
        from importlib.metadata import version

        env["liger_kernel"] = version("liger-kernel")
    except Exception:  # the peer needs it on CUDA; report it missing rather than fail the header
        env["liger_kernel"] = "missing"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regimes", nargs="+", default=[n for n in REGIMES if not n.startswith("tiny")])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add this run to the runs already in --out")
    parser.add_argument("--recheck-estimates", type=Path, metavar="RESULTS")
    parser.add_argument("--one", nargs=2, metavar=("REGIME", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recheck_estimates:
        print("\n".join(recheck_estimates(args.recheck_estimates)))
        return
    if args.one:
        print("RECORD " + json.dumps(run_one(*args.one, args.warmup, args.steps, args.device)), flush=True)
        return
    unknown = sorted(set(args.regimes) - set(REGIMES))
    if unknown:
        parser.error(f"unknown regimes {unknown}; known: {sorted(REGIMES)}")
    env = environment(args.device)
    print("ENV " + json.dumps(env), flush=True)
    records = []
    for name in args.regimes:
        for variant in args.variants:
            record = run_isolated(name, variant, args)
            records.append(record)
            print(summary([*records[:-1], record])[-1], flush=True)
    parity = {name: loss_parity(records, name) for name in args.regimes}
    print("SUMMARY")
    for line in summary(records):
        print(line)
    for name, worst in parity.items():
        if worst is not None:
            print(f"loss parity {name}: lmtune vs hf, largest relative difference {worst:.4%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(args.out.read_text())["runs"] if args.append and args.out.exists() else []
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])
    runs.append({"env": env, "command": command, "records": records, "loss_parity": parity})
    args.out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
