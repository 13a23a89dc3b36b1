"""rolecache: the thin client of the rolecache credential daemon."""

__version__ = "0.1.0"
