"""Bringing the catalogue up to date with a folder: the plan against the store, the local
run and the Ray run."""
