"""Half Fine-Tuning (Hui et al., 2024, "HFT: Half Fine-Tuning for Large Language Models").

Every round of `round_steps` optimizer steps, half of the parameters train and the other half stay frozen,
the halves drawn at random per round. Selection works on *groups* (one module's weight and bias, e.g.
`model.layers.3.self_attn.q_proj`) and is made per transformer block and per category inside a block,
following the paper's category-level selection on Llama:

- a *block* is one numbered child of a module list (`model.layers.<i>`); parameters outside every block
  (token embeddings, final norm, untied output head) form one more block of their own;
- the *category* of a group is the block's child that holds it (`self_attn`, `mlp`), with every norm of
  the block (`input_layernorm`, `post_attention_layernorm`, `ln_1`, ...) in one `norm` category; the
  outer block's groups are one category;
- in a category of k groups, k/2 train. When k is odd (Llama's MLP: gate, up, down), half of the blocks
  train ceil(k/2) and the other half floor(k/2), the blocks drawn at random, so that half of the
  category's matrices train overall (the paper's rule for the feed-forward layers).

So on Llama each block trains 2 of {q, k, v, o}, 1 or 2 of {gate, up, down} and 1 of its 2 norms; the
embeddings and the head are selected like any other group (with tied embeddings: the shared matrix or the
final norm). The draw for round r is seeded by the string `hft:<run seed>:<r>`, so a resumed run picks
the same halves as an uninterrupted one.

A frozen parameter truly does not move: `requires_grad` is off (no gradient, so AdamW skips it: no step,
no weight decay) and, at each round boundary, its gradient and its AdamW moments are dropped, so the
optimizer holds state for the trained half only and a parameter selected again later restarts its moments
instead of applying stale momentum. The optimizer is built over every parameter (`param_groups`), since a
parameter frozen now trains in a later round.

Weights are saved, loaded and merged as in full fine-tuning (the trained model is a plain model).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lmtune.config.methods.hft import HftConfig
from lmtune.methods import full

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

OUTER = ""
"""Block key of the parameters outside every transformer block (embeddings, final norm, head)."""
OUTER_CATEGORY = "outer"
NORM_CATEGORY = "norm"

Blocks = Mapping[str, Mapping[str, Sequence[str]]]
"""block -> category -> the names of its parameter groups."""


_applied: dict[HftConfig, frozenset[str]] = {}
"""The trainable parameter names of the selection last applied under each config (read by `trains`)."""


def group_of(name: str) -> tuple[str, str, str]:
    """(block, category, group) of the parameter called `name`.

    >>> group_of("model.layers.3.self_attn.q_proj.weight")
    ('model.layers.3', 'self_attn', 'model.layers.3.self_attn.q_proj')
    >>> group_of("model.layers.3.post_attention_layernorm.weight")
    ('model.layers.3', 'norm', 'model.layers.3.post_attention_layernorm')
    >>> group_of("lm_head.weight")
    ('', 'outer', 'lm_head')
    """
    parts = name.split(".")
    index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
    module = ".".join(parts[:-1]) or name
    if index is None:
        return OUTER, OUTER_CATEGORY, module
    block = ".".join(parts[: index + 1])
    rest = parts[index + 1 :]
    if len(rest) == 1:  # a parameter owned by the block itself
        return block, rest[0], name
    child = rest[0]
    category = NORM_CATEGORY if "norm" in child.lower() or child.lower().startswith("ln") else child
    return block, category, module


def blocks_of(names: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """Group parameter names into blocks -> categories -> sorted group names (see the module docstring)."""
    groups: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name in names:
        block, category, group = group_of(name)
        groups[block][category].add(group)
    return {b: {c: sorted(g) for c, g in cats.items()} for b, cats in groups.items()}


def select_groups(blocks: Blocks, seed: int, round_index: int) -> frozenset[str]:
    """The groups that train in round `round_index` of a run seeded `seed`: half of every category of
    every block, drawn from `random.Random("hft:<seed>:<round_index>")` (stable across processes).

    A category of k groups trains floor(k/2) + u groups, u in {0, 1}; u = 0 for even k. For odd k, among
    the n blocks having that category (same name and size), a random floor(n/2) of them, plus one more
    with probability 1/2 when n is odd, get u = 1.
    """
    rng = random.Random(f"hft:{seed}:{round_index}")
    odd: dict[tuple[str, int], list[str]] = defaultdict(list)
    for block in sorted(blocks):
        for category, groups in sorted(blocks[block].items()):
            if len(groups) % 2:
                odd[(category, len(groups))].append(block)
    rounds_up: set[tuple[str, str]] = set()
    for (category, _), members in sorted(odd.items()):
        rng.shuffle(members)
        n_up = len(members) // 2 + (len(members) % 2 if rng.random() < 0.5 else 0)
        rounds_up.update((block, category) for block in members[:n_up])
    selected: set[str] = set()
    for block in sorted(blocks):
        for category, groups in sorted(blocks[block].items()):
            take = len(groups) // 2 + ((block, category) in rounds_up)
            selected.update(rng.sample(sorted(groups), take))
    return frozenset(selected)


def round_of(global_step: int, round_steps: int) -> int:
    """The round that optimizer step `global_step + 1` belongs to: r = floor(global_step / round_steps)."""
    return global_step // round_steps


def apply_round(
    model: torch.nn.Module,
    cfg: HftConfig,
    seed: int,
    round_index: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> frozenset[str]:
    """Make exactly the parameters of round `round_index`'s selection trainable; returns their names.

    Frozen parameters lose their gradient and, when `optimizer` is given, their optimizer state.
    """
    named = dict(model.named_parameters())
    selected = select_groups(blocks_of(named), seed, round_index)
    trainable = frozenset(n for n in named if group_of(n)[2] in selected)
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    for name, param in named.items():
        param.requires_grad_(name in trainable)
        if name not in trainable:
            param.grad = None
            if inner is not None:
                inner.state.pop(param, None)
    _applied[cfg] = trainable
    return trainable


def prepare(model: PreTrainedModel, cfg: HftConfig) -> PreTrainedModel:
    """Select round 0's half, seeded with torch's seed (`train.sft.run` seeds it with the run seed just
    before, and the round callback re-selects from the run seed when training starts)."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    apply_round(model, cfg, torch.initial_seed(), 0)
    return model


def trains(name: str, cfg: HftConfig) -> bool:
    """Whether parameter `name` trains in the round most recently applied under `cfg` in this process.

    Raises:
        RuntimeError: no model was prepared with `cfg` yet.
    """
    if cfg not in _applied:
        raise RuntimeError(f"HFT: no selection applied under {cfg!r} yet (call methods.prepare first)")
    return name in _applied[cfg]


def param_groups(model: torch.nn.Module, cfg: HftConfig, learning_rate: float) -> list[dict[str, Any]]:
    """Every parameter, trainable now or not (a frozen half trains in a later round), split as
    transformers' Trainer does by default: no weight decay on biases and norms."""
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers.trainer_pt_utils import get_parameter_names

    no_decay_patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], no_decay_patterns))
    named = list(model.named_parameters())
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in named if n in decay]},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def callbacks(model: torch.nn.Module, cfg: HftConfig) -> list[TrainerCallback]:
    """The round callback: re-selects at training start (the round of a resumed step) and at every round
    boundary."""
    return [HftRoundCallback(model, cfg)]


def save(model: PreTrainedModel, cfg: HftConfig, out_dir: Path) -> None:
    """Write the whole model, as full fine-tuning does."""
    model.save_pretrained(out_dir)


def load(
    base_dir: str | Path, weights_dir: str | Path, cfg: HftConfig, dtype: str = "float32"
) -> PreTrainedModel:
    """Load the saved whole model (the base folder is not needed)."""
    return full.load(base_dir, weights_dir, full.FullConfig(), dtype)


def base_view(model: PreTrainedModel, cfg: HftConfig) -> None:
    """The trained half changed in place: the base must be loaded on its own."""
    return None


def merge(model: PreTrainedModel, cfg: HftConfig) -> PreTrainedModel:
    """Nothing to fold in: the trained model already is the merged model."""
    return model


class HftRoundCallback(TrainerCallback):
    """Apply round r = floor(global_step / round_steps)'s selection, seeded by the run seed (`args.seed`):
    when training starts (round 0, or the round of the step a resumed run starts from) and after every
    optimizer step that ends a round."""

    def __init__(self, model: torch.nn.Module, cfg: HftConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.round: int | None = None
        """The round applied last (None before training starts)."""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._apply(args, state, kwargs.get("optimizer"))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step % self.cfg.round_steps == 0:
            self._apply(args, state, kwargs.get("optimizer"))

    def _apply(self, args: TrainingArguments, state: TrainerState, optimizer: Any) -> None:
        self.round = round_of(state.global_step, self.cfg.round_steps)
        trainable = apply_round(self.model, self.cfg, args.seed, self.round, optimizer)
        log.info(
            "HFT round %d (from step %d, seed %d): %d of %d parameter tensors train",
            self.round,
            state.global_step,
            args.seed,
            len(trainable),
            sum(1 for _ in self.model.parameters()),
        )
