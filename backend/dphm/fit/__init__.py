"""Tracking: fit the head model to a preprocessed depth sequence (identity → track → refine → mesh)."""
