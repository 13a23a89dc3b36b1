"""The table of cache entries: created on demand, capped by evicting the least recently
used, kept warm when pinned, and every drop told to whoever keeps a copy."""

import logging
from collections.abc import Callable, Container, Iterator

from rolecached.core.cache import Entry
from rolecached.core.request import Key, RoleRequest

log = logging.getLogger(__name__)


class EntryTable:
    """Entries by key, at most `cap` of them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[Key, Entry] = {}
        # Told of every entry dropped (forgotten, evicted, expired): whoever keeps a
        # rendered copy of its credentials lets it go too.
        self._drop_listeners: list[Callable[[Key], None]] = []
        # Keys behind container bindings: their entries are renewed whether or not anyone
        # asks, also when they are created again after a forget or a failure.
        self._pinned: set[Key] = set()

    def get(self, key: Key) -> Entry | None:
        """The entry of `key`, if there is one."""
        return self._entries.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def items(self) -> list[tuple[Key, Entry]]:
        """Every (key, entry), oldest first, as a list the caller may drop from."""
        return list(self._entries.items())

    def keys(self) -> Iterator[Key]:
        """Every key, oldest first."""
        return iter(list(self._entries))

    def roles(self) -> list[Entry]:
        """Every role entry, oldest first (MFA sessions are kept out of listings)."""
        return [e for e in self._entries.values() if isinstance(e.request, RoleRequest)]

    def open(self, key: Key, now: float, cap: int, busy: Container[Key]) -> Entry:
        """The entry of `key`, created (evicting one at the cap) when there is none."""
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= cap:
                self._evict_least_recently_used(cap, busy)
            entry = self._entries[key] = Entry(
                key, created_at=now, last_used=now, keep_warm=key in self._pinned
            )
        return entry

    def _evict_least_recently_used(self, cap: int, busy: Container[Key]) -> None:
        """Make room for one entry: drop the one asked for longest ago (never one in flight
        or behind a container binding). A scan, but only ever at the cap."""
        candidates = [e for k, e in self._entries.items() if k not in busy and not e.keep_warm]
        if not candidates:
            return
        victim = min(candidates, key=lambda e: e.last_used)
        self.drop(victim.request)
        log.warning(
            "session cap (%d) reached: dropped %s, unused for %.0f s",
            cap,
            victim.request.describe(),
            self._clock() - victim.last_used,
        )

    def pin(self, key: Key, pinned: bool = True) -> None:
        """Keep `key`'s entry warm (renewed on schedule with nobody asking), or stop."""
        if pinned:
            self._pinned.add(key)
        else:
            self._pinned.discard(key)
        entry = self._entries.get(key)
        if entry is not None:
            entry.keep_warm = pinned

    def on_drop(self, listener: Callable[[Key], None]) -> None:
        """Call `listener(key)` whenever an entry is dropped, for whatever reason."""
        self._drop_listeners.append(listener)

    def drop(self, key: Key) -> None:
        """Drop the entry of `key` and tell the listeners."""
        del self._entries[key]
        for listener in self._drop_listeners:
            listener(key)
