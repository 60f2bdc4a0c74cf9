"""Images to vectors: extractors (single-model, composite, layer sweeps, adapted), the one
way to build them, and pooling."""
