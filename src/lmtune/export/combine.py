"""A weighted combination of LoRA adapters, exported as a run's export (`lmtune export --combine
a:0.7,b:0.3 RUN_DIR`, or `export.combine` in the run's config).

run(rundir, combine)
  -> each source is an adapter folder (adapter_config.json), or a run directory whose `adapter/` is used
  -> check they are LoRA adapters of the run's base model (quantized alike, for QLoRA adapters) that
     `combine.combination` can mix
  -> load them on the base, combine them into one adapter (lmtune.methods.adapters.combine) and save it
     to `<run>/export/combined/` (PEFT layout, tokenizer, combine.json)
  -> export that adapter like a trained run's (lmtune.export.run.export): `<run>/export/merged/` and
     the export check; lineage.json `combine` records the sources and weights
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune import methods
from lmtune.config.deploy import Combination, CombineConfig, CombineSource
from lmtune.config.methods.lora import LoraConfig
from lmtune.errors import ConfigError, ModelLoadError
from lmtune.export.folder import export
from lmtune.methods import adapters
from lmtune.runtime.load import resolve_model_path
from lmtune.runtime.rundir import RunDir, atomic_write_text
from lmtune.weights.load import load_weights_tokenizer

if TYPE_CHECKING:
    from lmtune.export.folder import ExportResult

COMBINED = "combined"
"""The combined adapter's folder under `<run>/export/`."""


def parse_spec(spec: str, combination: Combination = "cat") -> CombineConfig:
    """`PATH:WEIGHT[,PATH:WEIGHT...]` (the `--combine` option) as a CombineConfig.

    Raises:
        ConfigError: an item without `:WEIGHT`, an empty path, or a weight that is not a finite,
            non-zero number.
    """
    sources = []
    for item in spec.split(","):
        path, sep, text = item.strip().rpartition(":")
        if not sep or not path:
            raise ConfigError(f"--combine {item.strip()!r}: expected PATH:WEIGHT, e.g. runs/math:0.7")
        try:
            weight = float(text)
        except ValueError:
            raise ConfigError(f"--combine {item.strip()!r}: weight {text!r} is not a number") from None
        if not math.isfinite(weight) or weight == 0:
            raise ConfigError(f"--combine {item.strip()!r}: weight must be a finite, non-zero number")
        sources.append(CombineSource(path=path, weight=weight))
    return CombineConfig(adapters=sources, combination=combination)


def adapter_folder(path: str) -> Path:
    """The adapter folder a `--combine` path names: the folder itself when it holds adapter_config.json,
    else the run directory's `adapter/`.

    Raises:
        ModelLoadError: the path does not exist, or holds neither an adapter nor a run's adapter.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"{path}: no such adapter folder or run directory")
    if (folder / "adapter_config.json").is_file():
        return folder
    if (folder / "adapter" / "adapter_config.json").is_file():
        return folder / "adapter"
    if (folder / "model").is_dir():
        raise ModelLoadError(f"{path}: a run that saved whole weights (model/), not a LoRA adapter")
    raise ModelLoadError(f"{path}: neither an adapter folder (adapter_config.json) nor a run with adapter/")


def run(rundir: RunDir, combine: CombineConfig) -> ExportResult:
    """Combine the adapters of `combine` on `rundir`'s base model and export the result as the run's
    export (merged folder + export check), keeping the combined adapter in `<run>/export/combined/`.

    Raises:
        ModelLoadError: a source is missing or not an adapter.
        ConfigError: a source is not a plain LoRA adapter of the run's base, or the ranks do not fit
            the combination type.
        ExportCheckError: as for any export.
    """

    cfg = rundir.load_config()
    base_dir = resolve_model_path(cfg.model.path)
    infos = [adapters.read_adapter(adapter_folder(s.path)) for s in combine.adapters]
    rank = adapters.check_combinable(infos, combine.combination, base_dir)

    names = [f"source{i}" for i in range(len(infos))]
    sources = dict(zip(names, (i.path for i in infos), strict=True))
    model = adapters.load_adapters(base_dir, sources, cfg.model.dtype, infos[0].quantization)
    weights = dict(zip(names, (s.weight for s in combine.adapters), strict=True))
    # Named "default" so PEFT saves it at the folder's top level (where PeftModel.from_pretrained looks).
    adapters.combine(model, weights, "default", combine.combination)
    for name in names:
        model.delete_adapter(name)

    # PEFT builds the combination with lora_alpha = r (scaling 1): w_i and s_i are folded into A and B.
    as_lora = cfg.model_copy(update={"method": LoraConfig(rank=rank, alpha=rank)})
    record = _record(combine, infos, rank)
    out = rundir.export / COMBINED
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    methods.save_weights(model, as_lora.method, tmp)  # LoRA's layout, with a quantized base recorded
    load_weights_tokenizer(infos[0].path, cfg.model).save_pretrained(tmp)
    atomic_write_text(tmp / "combine.json", json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    del model  # one model in memory at a time: the export loads the combined adapter again

    result = export(rundir, as_lora.export, as_lora.weights, out, as_lora.evaluate.batch_size)
    rundir.update_lineage(combine=record)
    return result


def _record(combine: CombineConfig, infos: list[adapters.AdapterInfo], rank: int) -> dict[str, Any]:
    return {
        "combination": combine.combination,
        "rank": rank,
        "adapters": [
            {
                "path": str(info.path.resolve()),
                "weight": s.weight,
                "rank": info.rank,
                "alpha": info.alpha,
                "quantization": info.quantization,
            }
            for s, info in zip(combine.adapters, infos, strict=True)
        ],
    }
