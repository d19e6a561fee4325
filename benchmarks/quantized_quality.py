"""What the quantized transformers exports cost on a real fine-tuned model: bitsandbytes nf4/fp4/int8 and
torchao int8 weight-only, against the merged model.

Drives the product's own export (`lmtune.export.derived.write_derived`, what `lmtune export RUN --format
bnb|torchao --quant Q` calls) on a run that holds a checked merged export (default: the quickstart's
fine-tuned SmolLM2-135M-Instruct, `make quickstart`). Per scheme: weight file size, whether the reloaded
folder answers exactly as the quantized model it holds, greedy answers identical to the merged model's,
teacher-forced top-1 agreement, perplexity of the held-out conversations and mean KL divergence per token
against the merged model.

    .venv/bin/python benchmarks/quantized_quality.py [--run runs/quickstart] [--prompts 16] [--texts 40]

Writes benchmarks/results/quantized_quality.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from export_support import checked_run

from lmtune.config.formats import BnbFormat, QuantizedFormat, TorchaoFormat
from lmtune.export.derived import write_derived

OUT = Path(__file__).parent / "results" / "quantized_quality.json"


def main() -> None:
    args, rundir, config = checked_run(__doc__.split("\n")[0])
    formats: list[QuantizedFormat] = [
        BnbFormat(quantization="nf4", text_samples=args.texts),
        BnbFormat(quantization="fp4", text_samples=args.texts),
        BnbFormat(quantization="int8", text_samples=args.texts),
        TorchaoFormat(text_samples=args.texts),
    ]
    rows: list[dict[str, Any]] = []
    for fmt in formats:
        start = time.perf_counter()
        folder = write_derived(rundir, fmt, config)
        record = json.loads((folder / "quantized_check.json").read_text())
        record.pop("answers")
        rows.append({**record, "seconds": round(time.perf_counter() - start, 1)})
    merged_mib = sum(f.stat().st_size for f in rundir.merged.glob("*.safetensors")) / 2**20
    OUT.write_text(
        json.dumps(
            {
                "run": args.run,
                "model": rundir.load_config().model.path,
                "check_prompts": args.prompts,
                "max_new_tokens": args.max_new_tokens,
                "texts": args.texts,
                "merged_mib": round(merged_mib, 1),
                "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
                "formats": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print("| format | MiB | reload identical | greedy = merged | top-1 | perplexity | KL vs merged |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| merged (fp32) | {merged_mib:.1f} | | | | {rows[0]['merged_perplexity']:.3f} | |")
    for r in rows:
        print(
            f"| {r['library']} {r['scheme']} | {r['size_bytes'] / 2**20:.1f} | {r['reload_identical']} | "
            f"{r['greedy_identical_to_merged']}/{r['greedy_total']} | {r['top1_agreement']:.4f} | "
            f"{r['perplexity']:.3f} | {r['kl_vs_merged']:.5f} |"
        )
    print(f"{rows[0]['tokens_scored']} tokens scored -> {OUT}")


if __name__ == "__main__":
    main()
