"""Stage 5: held-out loss, generation metrics (exact match, answer format), base vs tuned."""
