"""Several LoRA adapters on one base model, through PEFT: load them side by side, switch between them,
stack them (several active at once) and weight-combine them into one new adapter.

For an adapted linear layer with base weight W and adapters i = (A_i, B_i, s_i = alpha_i / r_i, or
alpha_i / sqrt(r_i) for rsLoRA):

- switch to i:   y = W x + s_i B_i A_i x
- stack S:       y = W x + sum_{i in S} s_i B_i A_i x  (the same as merging one adapter, then applying
                 the next on top of the merged model)
- combine `cat`: dW = sum_i w_i s_i B_i A_i exactly, as one adapter of rank sum_i r_i
- combine `svd`: the best rank-max_i(r_i) approximation of that same sum
- combine `linear`: dW = (sum_i sqrt|w_i s_i| B_i)(sum_i sgn(w_i s_i) sqrt|w_i s_i| A_i): A and B are
  combined separately, so the cross terms B_i A_j (i != j) appear; it is NOT the weighted sum of the
  updates when mixing several adapters, and every adapter must have the same rank.

PEFT (`load_adapter`, `set_adapter`, `add_weighted_adapter`) does the work; this module names the
semantics, turns PEFT's refusals into one-line errors, refuses DoRA adapters (magnitude vectors do not
add up) and gives the combination the unit scaling its A and B were built for (PEFT would keep an
rsLoRA first source's alpha/sqrt(r)).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.config.deploy import Combination
from lmtune.config.model import ModelConfig, Quantization
from lmtune.errors import ConfigError, ModelLoadError
from lmtune.methods.peft_adapter import fit_saved_vocab, peft_call, saved_quantization
from lmtune.runtime.load import load_model

if TYPE_CHECKING:
    from peft import PeftModel

DORA = "a DoRA adapter; its magnitude vectors do not combine (only plain LoRA updates add up)"


@dataclass(frozen=True)
class AdapterInfo:
    """What a saved LoRA adapter folder says about itself."""

    path: Path
    rank: int
    """The largest rank of any of its layers (PEFT's `r`, or the top of its `rank_pattern`)."""
    alpha: float
    base: str
    """`base_model_name_or_path`: the base model it was trained on."""
    quantization: Quantization
    """How that base was quantized while training (lmtune's QLoRA record; `none` for a float base)."""


def read_adapter(path: Path) -> AdapterInfo:
    """Read and check a saved adapter folder: a LoRA adapter whose update can be combined.

    Raises:
        ModelLoadError: no adapter_config.json, or it is unreadable.
        ConfigError: not a LoRA adapter, or a DoRA adapter (its magnitude vectors do not combine).
    """

    config_path = path / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: not an adapter folder (no adapter_config.json)") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config_path}: cannot read the adapter config ({exc})") from None
    kind = config.get("peft_type")
    if kind != "LORA":
        raise ConfigError(f"{path}: a {kind} adapter; only LoRA adapters can be combined")
    if config.get("use_dora"):
        raise ConfigError(f"{path}: {DORA}")
    rank = max([int(config["r"]), *map(int, (config.get("rank_pattern") or {}).values())])
    base = str(config.get("base_model_name_or_path"))
    return AdapterInfo(path, rank, float(config["lora_alpha"]), base, saved_quantization(path))


def same_base(a: str, b: str) -> bool:
    """Whether two base-model references name the same model (the same folder, or the same hub id)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.is_dir() and pb.is_dir():
        return pa.resolve() == pb.resolve()
    return a == b


def combination_rank(ranks: Sequence[int], combination: Combination) -> int:
    """Rank of the combined adapter: sum r_i for `cat`, max r_i for `svd`, the common r for `linear`.

    Raises:
        ConfigError: `linear` over adapters of different ranks.
    """
    match combination:
        case "cat":
            return sum(ranks)
        case "svd":
            return max(ranks)
        case "linear":
            if len(set(ranks)) > 1:
                raise ConfigError(
                    f"combination 'linear' needs adapters of one rank, got ranks {list(ranks)}; "
                    "use 'cat' (exact) or 'svd'"
                )
            return ranks[0]


def check_combinable(infos: Sequence[AdapterInfo], combination: Combination, base: str) -> int:
    """Check that `infos` can be combined with `combination` on the model `base`; return the rank of
    the combination.

    Raises:
        ConfigError: an adapter was trained on another base, or on a base quantized differently from
            the first adapter's, or the ranks do not fit `combination`.
    """
    for info in infos:
        if not same_base(info.base, base):
            raise ConfigError(
                f"{info.path}: trained on base '{info.base}', not on '{base}'; "
                "adapters combine only on the base they were trained on"
            )
        if info.quantization != infos[0].quantization:
            raise ConfigError(
                f"{info.path}: trained on a base quantized '{info.quantization}', but {infos[0].path} on "
                f"one quantized '{infos[0].quantization}'; adapters combine only on one base"
            )
    return combination_rank([i.rank for i in infos], combination)


def load_adapters(
    base_dir: str | Path,
    adapters: Mapping[str, Path],
    dtype: str = "float32",
    quantization: Quantization = "none",
) -> PeftModel:
    """The base model in `base_dir` (quantized with `quantization`, as the adapters were trained) with
    every adapter of `adapters` ({name: folder}) loaded under its name, frozen, in eval mode; the first
    one is active.

    Raises:
        ConfigError: no adapters given.
    """
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import PeftModel

    if not adapters:
        raise ConfigError("no adapters to load")
    (first, first_dir), *rest = adapters.items()
    base = load_model(ModelConfig(path=str(base_dir), dtype=dtype, quantization=quantization))
    fit_saved_vocab(base, adapters.values())
    with peft_call():
        model = PeftModel.from_pretrained(
            base, str(first_dir), adapter_name=first, autocast_adapter_dtype=False
        )
    for name, folder in rest:
        model.load_adapter(str(folder), adapter_name=name, autocast_adapter_dtype=False)
    return model.eval()


def switch(model: PeftModel, name: str) -> None:
    """Make `name` the one active adapter (frozen): y = W x + s B A x for that adapter alone."""
    model.set_adapter(name, inference_mode=True)


def stack(model: PeftModel, names: Sequence[str]) -> None:
    """Make every adapter in `names` active at once (frozen): y = W x + sum_i s_i B_i A_i x. Merging
    the stacked model (`merge_and_unload`) folds all of them in."""
    unknown = [n for n in names if n not in model.peft_config]
    if unknown or not names:
        raise ConfigError(f"cannot stack {list(names)}: loaded adapters are {sorted(model.peft_config)}")
    # PeftModel.set_adapter takes one name; the LoraModel it wraps takes several.
    tuner: Any = model.base_model
    tuner.set_adapter(list(names), inference_mode=True)


def combine(model: PeftModel, weights: Mapping[str, float], name: str, combination: Combination) -> None:
    """Add adapter `name` = the `combination` of the loaded adapters with `weights` ({adapter: w_i})
    and make it the active one (see the module docstring for what each combination computes).

    Raises:
        ConfigError: a weight is not finite, `name` already exists, or PEFT refuses the combination
            (e.g. `linear` over different ranks).
    """
    unknown = [k for k in weights if k not in model.peft_config]
    if unknown or not weights:
        raise ConfigError(f"cannot combine {list(weights)}: loaded adapters are {sorted(model.peft_config)}")
    bad = {k: w for k, w in weights.items() if not math.isfinite(w)}
    if bad:
        raise ConfigError(f"adapter weights must be finite numbers, got {bad}")
    if name in model.peft_config:
        raise ConfigError(f"an adapter named '{name}' is already loaded")
    dora = [k for k in weights if getattr(model.peft_config[k], "use_dora", False)]
    if dora:
        raise ConfigError(f"{dora}: {DORA}")
    combination_rank([_rank(model.peft_config[k]) for k in weights], combination)  # before PEFT's message
    try:
        model.add_weighted_adapter(list(weights), list(weights.values()), name, combination_type=combination)
    except ValueError as exc:
        raise ConfigError(f"cannot combine adapters {list(weights)} with '{combination}': {exc}") from None
    _unit_scaling(model, name)
    switch(model, name)


def _unit_scaling(model: PeftModel, name: str) -> None:
    """Give the combined adapter `name` the scaling 1 its A and B were built for (w_i s_i is folded into
    them). PEFT copies the first source's config, so after an rsLoRA source it would scale the combination
    by alpha/sqrt(r) = sqrt(r); with use_rslora off, lora_alpha = r gives 1, in memory and when reloaded."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft.tuners.lora import LoraLayer

    config = model.peft_config[name]
    if not getattr(config, "use_rslora", False):
        return
    config.use_rslora = False  # type: ignore[attr-defined]
    for module in model.modules():
        if isinstance(module, LoraLayer) and name in module.scaling:
            module.scaling[name] = 1.0


def _rank(config: Any) -> int:
    """A loaded LoRA config's largest layer rank (as PEFT allocates it when combining)."""
    return max([int(config.r), *map(int, (config.rank_pattern or {}).values())])
