"""Exploring what a network sees: layer tables, channel images, top-activating images,
heatmaps of why two images match, and 2-D maps of a collection."""
