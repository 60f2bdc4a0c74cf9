"""Vector indexes behind one protocol (exact, approximate, pgvector), the metric they rank by,
the catalog that builds, saves and reloads them, their manifests and their status."""
