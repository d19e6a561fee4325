"""Stages 3-4: supervised fine-tuning.

`sft.run(cfg, resume)` is the entry point. Around transformers' Trainer it owns what the library lacks:
`preflight` (refuse runs that cannot work before spending compute), `checkpoints` (a checkpoint counts
only once its hash manifest is written; resume picks the newest complete one), the non-finite guard and
metrics sink in `callbacks`, the padding `collator`, and `lineage`.
"""
