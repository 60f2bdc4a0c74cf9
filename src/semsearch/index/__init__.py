"""Vector indexes behind one protocol (exact, approximate, pgvector), the metric they rank by,
and the catalog that builds, saves and reloads them."""
