"""Converters from syncd's unit layout (the Xtreme1 folder layout) to other platforms' input formats."""
