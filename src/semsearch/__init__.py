"""semsearch: semantic image search with convolutional networks."""

__version__ = "0.1.0"
