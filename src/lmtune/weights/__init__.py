"""A run's trained weights: loaded through their method, merged and saved as a standard folder, and
which weights the later stages of a run use (the aligned policy or the SFT weights)."""
