"""Exact copies of a learner's state (weights, optimizer, every random state), in host memory or on disk."""
