"""Driver conformance kit (placeholder; filled below)."""
