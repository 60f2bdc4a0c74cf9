"""Exploring what a network sees: 2-D maps of a collection, and (later) channels and heatmaps."""
