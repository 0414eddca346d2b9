"""Data sources: deterministic, index-addressable image sets (procedural sources, files, arrays, images at their own
sizes)."""
