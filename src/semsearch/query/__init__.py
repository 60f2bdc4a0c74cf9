"""Answering searches: one service for an image, words, a focus class or a collection,
returning one ranked-hit type; the text model; tags."""
