"""Stage 6a: merged standard model folder + export consistency check."""
