"""Benchmarks of syncd against references measured in the same run (``python -m bench``)."""
