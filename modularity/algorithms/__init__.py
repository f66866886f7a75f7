"""Algorithms with no knowledge of models or configs: k-means, set overlap, statistics."""
