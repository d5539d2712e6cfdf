"""syncd: keeps local sensor-data folders and annotation platforms in sync."""

__version__ = "0.1.0"
