"""Vector indexes behind one small protocol."""
