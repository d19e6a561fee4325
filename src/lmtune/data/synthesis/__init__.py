"""Synthetic data from a teacher model behind an OpenAI-compatible endpoint (`lmtune data synthesize`)."""
