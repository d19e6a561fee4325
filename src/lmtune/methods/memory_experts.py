"""Memory experts: product-key memory layers added to chosen blocks of a frozen base (Lamini memory
tuning / mixture of memory experts; product-key memory, Lample et al. 2019).

Each chosen decoder block gets a `MemoryLayer` (see `memory_layer.py`): its output h becomes
h + m(h), where m mixes the top-k of num_keys² value vectors picked by key routing. Values start at
zero, so the prepared model computes exactly the base function; only the memory trains.

The memory is a lookup, not a weight delta, so it cannot be folded into the dense weights
(`mergeable` is False). A saved folder is therefore self-contained: the base as a standard
transformers folder under `base/` (computes the base model, without the memory), the memory as
`memory.safetensors` + `memory_config.json`, and a README that says how to load the two together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.config.methods.memory_experts import MemoryExpertsConfig
from lmtune.errors import ConfigError
from lmtune.methods.memory_layer import MemoryLayer
from lmtune.runtime.load import causal_lm, torch_dtype

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, TrainerCallback

    from lmtune.methods.memory_layer import MemoryLayer

ATTRIBUTE = "memory_experts"
"""Name of the memory submodule on each chosen decoder block (parameters `...layers.<i>.memory_experts.*`)."""
WEIGHTS_FILE = "memory.safetensors"
CONFIG_FILE = "memory_config.json"
BASE_FOLDER = "base"
FORMAT = "lmtune-memory-experts/1"


def parameter_count(cfg: MemoryExpertsConfig, hidden_size: int) -> int:
    """Trainable parameters the method adds: per memory layer key_dim x hidden (query) + num_keys x
    key_dim (two halves of sub-keys) + num_keys² x value_dim (values) + value_dim x hidden (W_o)
    (+ hidden + 1 with the gate)."""
    per_layer = (
        cfg.key_dim * hidden_size
        + cfg.num_keys * cfg.key_dim
        + cfg.num_keys**2 * cfg.value_dim
        + cfg.value_dim * hidden_size
        + (hidden_size + 1 if cfg.gate else 0)
    )
    return len(cfg.layers) * per_layer


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's list of decoder blocks (`get_decoder().layers`).

    Raises:
        ConfigError: the model has no such list (not a decoder-only transformer of the usual layout).
    """
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    from torch import nn

    get_decoder = getattr(model, "get_decoder", None)
    blocks = getattr(get_decoder(), "layers", None) if callable(get_decoder) else None
    if not isinstance(blocks, nn.ModuleList):
        raise ConfigError(
            f"method memory_experts: {type(model).__name__} has no decoder block list (get_decoder().layers)"
        )
    return blocks


def resolve_layers(layers: list[int], num_blocks: int) -> list[int]:
    """`layers` as 0-based indices into a stack of `num_blocks` blocks (negative counts from the end).

    Raises:
        ConfigError: an index is out of range, or two indices name the same block.
    """
    resolved = []
    for i in layers:
        if not -num_blocks <= i < num_blocks:
            raise ConfigError(
                f"method.layers: block {i} does not exist; the model has {num_blocks} blocks "
                f"(0..{num_blocks - 1}, or -{num_blocks}..-1)"
            )
        resolved.append(i % num_blocks)
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"method.layers: {layers} name the same block twice in a {num_blocks}-block model")
    return resolved


def memory_layers(model: torch.nn.Module) -> dict[int, MemoryLayer]:
    """{block index: its memory layer} for every block that carries one."""
    return {
        i: getattr(block, ATTRIBUTE)
        for i, block in enumerate(decoder_blocks(model))
        if hasattr(block, ATTRIBUTE)
    }


def _add_memory(block: torch.nn.Module, args: Any, output: Any) -> Any:
    """Forward hook on a decoder block: output h -> h + m(h) (unchanged while the memory is disabled).

    A module-level function reading the memory from the block, so a deep copy of the model keeps working.
    """
    memory = getattr(block, ATTRIBUTE)
    if not memory.enabled:
        return output
    if isinstance(output, tuple):  # blocks of some architectures return (hidden, extras...)
        return (output[0] + memory(output[0]), *output[1:])
    return output + memory(output)


def insert(model: PreTrainedModel, cfg: MemoryExpertsConfig) -> PreTrainedModel:
    """Add a freshly initialised memory layer to each block in `cfg.layers` (in place); values are zero,
    so the model's function is unchanged.

    Raises:
        ConfigError: a block does not exist, or the model already carries memory layers.
    """

    blocks = decoder_blocks(model)
    if memory_layers(model):
        raise ConfigError("method memory_experts: the model already carries memory layers")
    hidden = model.config.get_text_config().hidden_size
    device = next(model.parameters()).device
    for i in resolve_layers(cfg.layers, len(blocks)):
        layer = MemoryLayer(
            hidden, cfg.num_keys, cfg.topk, cfg.key_dim, cfg.value_dim, cfg.gate, cfg.query_noise
        ).to(device)
        blocks[i].add_module(ATTRIBUTE, layer)
        blocks[i].register_forward_hook(_add_memory)
    return model


def prepare(model: PreTrainedModel, cfg: MemoryExpertsConfig) -> PreTrainedModel:
    """Freeze the base and insert the memory layers; only they train."""
    for p in model.parameters():
        p.requires_grad_(False)
    return insert(model, cfg)


def trains(name: str, cfg: MemoryExpertsConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: exactly the memory layers' parameters."""
    return f".{ATTRIBUTE}." in name


def save(model: PreTrainedModel, cfg: MemoryExpertsConfig, out_dir: Path) -> None:
    """Write a self-contained folder: `base/` (standard transformers folder, memory left out),
    `memory.safetensors` (per block i: `layers.<i>.{query,keys_a,keys_b,values}`), `memory_config.json`
    and a README on how to load them together."""
    # deferred: safetensors only when this runs (keeps `import lmtune...` light)
    from safetensors.torch import save_file

    layers = memory_layers(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"layers.{i}.{name}": t.detach().contiguous()
        for i, memory in layers.items()
        for name, t in memory.state_dict().items()
    }
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    base_state = {k: v for k, v in model.state_dict().items() if f".{ATTRIBUTE}." not in k}
    model.save_pretrained(out_dir / BASE_FOLDER, state_dict=base_state)
    hidden = model.config.get_text_config().hidden_size
    meta = {
        "format": FORMAT,
        "method": cfg.model_dump(mode="json"),
        "blocks": sorted(layers),
        "hidden_size": hidden,
        "experts_per_layer": cfg.num_keys**2,
        "trainable_parameters": parameter_count(cfg, hidden),
        "base": BASE_FOLDER,
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(_readme(meta), encoding="utf-8")


def load(
    base_dir: str | Path | None, weights_dir: str | Path, cfg: MemoryExpertsConfig, dtype: str = "float32"
) -> PreTrainedModel:
    """Load a folder written by `save`: its own `base/`, with the memory layers re-inserted and loaded.

    The folder describes itself (`memory_config.json`), so `base_dir` and the layout in `cfg` are not
    needed; every parameter comes back frozen.

    Raises:
        OSError: a file of the folder is missing. ValueError: the folder's memory does not fit its config.
    """
    # deferred: safetensors only when this runs (keeps `import lmtune...` light)
    from safetensors.torch import load_file

    folder = Path(weights_dir)
    meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    saved = MemoryExpertsConfig.model_validate(meta["method"])
    model = causal_lm(folder / meta["base"], torch_dtype(dtype))
    insert(model, saved)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    for i, memory in memory_layers(model).items():
        prefix = f"layers.{i}."
        state = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            memory.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{folder / WEIGHTS_FILE}: block {i} does not match {CONFIG_FILE} ({exc})"
            ) from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def merge(model: PreTrainedModel, cfg: MemoryExpertsConfig) -> PreTrainedModel:
    """Refused: see `mergeable`.

    Raises:
        ConfigError: always.
    """
    raise ConfigError(
        "method memory_experts cannot be merged into dense weights: export it unmerged (base + memory)"
    )


def base_view(model: PreTrainedModel, cfg: MemoryExpertsConfig) -> AbstractContextManager[None]:
    """The same model with every memory layer disabled computes the base function (no second copy)."""
    return disabled(model)


@contextmanager
def disabled(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, the memory layers add nothing; their previous state is restored after."""
    layers = memory_layers(model).values()
    before = [m.enabled for m in layers]
    for m in layers:
        m.enabled = False
    try:
        yield
    finally:
        for m, state in zip(layers, before, strict=True):
            m.enabled = state


def param_groups(
    model: PreTrainedModel, cfg: MemoryExpertsConfig, learning_rate: float
) -> list[dict[str, Any]]:
    """Two AdamW groups: the values at learning_rate x `value_lr_ratio`, the rest of the memory (query,
    keys, shared output projection) at learning_rate."""
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    values = [p for n, p in trained if n.endswith(f".{ATTRIBUTE}.values")]
    shared = [p for n, p in trained if not n.endswith(f".{ATTRIBUTE}.values")]
    return [
        {"params": shared, "lr": learning_rate},
        {"params": values, "lr": learning_rate * cfg.value_lr_ratio},
    ]


def callbacks(model: PreTrainedModel, cfg: MemoryExpertsConfig) -> list[TrainerCallback]:
    """Nothing to do during training."""
    return []


def _readme(meta: dict[str, Any]) -> str:
    method = meta["method"]
    return f"""# Memory experts (lmtune)

This folder is a base model plus product-key memory layers. The memory cannot be merged into the
dense weights, so the two are stored side by side:

- `{meta["base"]}/`: a standard transformers model folder. **On its own it is the base model, without
  the memory**: `AutoModelForCausalLM.from_pretrained("{meta["base"]}")` does not recall what was trained.
- `{WEIGHTS_FILE}`: for each block i in {meta["blocks"]}: `layers.<i>.query` (key_dim x hidden),
  `layers.<i>.keys_a`, `layers.<i>.keys_b` (num_keys x key_dim/2), `layers.<i>.values`
  (num_keys² x value_dim), `layers.<i>.out` (hidden x value_dim), `layers.<i>.center` (hidden),
  `layers.<i>.seen` (how many training tokens `center` averages) and, with the gate,
  `layers.<i>.gate` (hidden + 1: w_g, then b_g) — num_keys = {method["num_keys"]},
  key_dim = {method["key_dim"]}, value_dim = {method["value_dim"]}, hidden = {meta["hidden_size"]},
  topk = {method["topk"]}, gate = {method["gate"]}.
- `{CONFIG_FILE}`: the layout above ({meta["trainable_parameters"]:,} trained memory parameters).

## Load with lmtune

```python
from lmtune.methods.memory_experts import load
model = load(None, "path/to/this/folder")  # base + memory, frozen, ready for generate()
```

## Load without lmtune

Load `{meta["base"]}/` with transformers and register a forward hook on each listed decoder block
(`model.model.layers[i]`) that replaces the block's output h by h + m(h), where, per token:

    r        = sqrt(mean(h^2) + 1e-6)
    q        = query @ (h / r - center)                   split in halves q = [q_a ; q_b]
    s(i, j)  = q_a . keys_a[i] + q_b . keys_b[j]          expert e = i * num_keys + j
    E        = the topk experts with the highest s
    g        = sigmoid(gate[:-1] . (h / r - center) + gate[-1])     (g = 1 without a gate)
    m(h)     = g * r * out @ (sum over e in E of softmax(s(E))_e * values[e])
"""
