"""Evaluation: geometric metrics between reconstructions and ground truth / depth observations."""
