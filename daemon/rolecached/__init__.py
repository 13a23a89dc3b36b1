"""rolecached: the daemon that assumes roles and keeps their credentials warm in memory."""

from rolecache import __version__

__all__ = ["__version__"]
