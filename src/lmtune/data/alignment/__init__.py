"""Alignment data: preference, KTO and prompt records prepared for the objectives, and preference pairs
built from solved problems (`lmtune data pairs`)."""
