"""The gallery of enrolled faces: SQLite store (durable) + in-memory index (matching)."""
