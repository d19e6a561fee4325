"""Stage 1, data preparation: sources -> validated records (rejects kept) -> chat template + loss mask
-> optional packing -> deterministic train/eval split, written to the run directory.

Entry points: `lmtune.data.prepare.prepare` / `load_prepared` / `load_or_prepare`, and
`lmtune.data.formats.validate.validate_file` for `lmtune data validate`.
"""
