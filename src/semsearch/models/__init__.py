"""Backbones: a registry of named models, their layers, preprocessing and runtimes."""
