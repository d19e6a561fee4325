"""What each GGUF type costs on a real fine-tuned model: the table llama.cpp's own docs do not give.

Drives the product's own GGUF export (`lmtune.export.derived.write_derived`, what `lmtune export RUN
--format gguf` calls) on a run that holds a checked merged export (default: the quickstart's fine-tuned
SmolLM2-135M-Instruct, `make quickstart`), every type at once, with more check prompts and held-out
conversations than the defaults. Per type: file size, greedy answers identical to the reference (the
merged model, rounded to the file's float type for f32/bf16/f16), teacher-forced top-1 agreement,
perplexity of the held-out conversations and mean KL divergence per token against the f16 file and
against the merged model, all measured in llama.cpp's runtime.

    .venv/bin/python benchmarks/gguf_quality.py [--run runs/quickstart] [--prompts 16] [--texts 40]

Writes benchmarks/results/gguf_quality.json (the check's record, the settings and the times).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import get_args

from export_support import checked_run

from lmtune.config.formats import GgufFormat, GgufQuant
from lmtune.export.check import ExportCheckError
from lmtune.export.derived import write_derived

OUT = Path(__file__).parent / "results" / "gguf_quality.json"


def main() -> None:
    args, rundir, config = checked_run(__doc__.split("\n")[0])
    fmt = GgufFormat(quants=list(get_args(GgufQuant)), text_samples=args.texts)
    start = time.perf_counter()
    failure = None
    try:
        folder = write_derived(rundir, fmt, config)
    except ExportCheckError as exc:  # the record is written first: report it with the failure
        folder, failure = rundir.export / fmt.folder, str(exc)
    seconds = time.perf_counter() - start
    record = json.loads((folder / "gguf_check.json").read_text())
    for f in record["files"]:
        f.pop("answers")
    OUT.write_text(
        json.dumps(
            {
                "run": args.run,
                "model": rundir.load_config().model.path,
                "check_prompts": args.prompts,
                "max_new_tokens": args.max_new_tokens,
                "texts": args.texts,
                "seconds": round(seconds, 1),
                "check_failure": failure,
                "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
                **record,
            },
            indent=2,
        )
        + "\n"
    )
    print("| type | MiB | greedy identical | top-1 agreement | perplexity | KL vs f16 | KL vs merged |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| merged (transformers, fp32) | | | | {record['merged_perplexity']:.3f} | | |")
    for f in record["files"]:
        kl16 = "" if f["kl_vs_f16"] is None else f"{f['kl_vs_f16']:.5f}"
        print(
            f"| {f['quant']} | {f['size_bytes'] / 2**20:.1f} | {f['greedy_identical']}/{f['greedy_total']} | "
            f"{f['top1_agreement']:.4f} | {f['perplexity']:.3f} | {kl16} | {f['kl_vs_merged']:.5f} |"
        )
    print(f"{record['tokens_scored']} tokens scored; {seconds:.1f} s; check failure: {failure}; -> {OUT}")


if __name__ == "__main__":
    main()
