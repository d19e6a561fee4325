"""Curation steps: exact and near deduplication, PII scrubbing, decontamination, quality filters."""
