"""Counters, gates and reads in the cache that the throttle and usage records share.

An unavailable cache degrades what they count, never the answer a caller gets: while the
shared cache (Redis) cannot be reached, each process counts in its own memory (`fallback`),
so throttling goes on per process instead of stopping; nothing here ever raises.
"""

import logging

from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

logger = logging.getLogger(__name__)

# This process's own counters, used only while the shared cache is unavailable.
fallback = LocMemCache("keys-cache-counters-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})


def _incr(store, name: str, delta: int, timeout: int) -> int:
    try:
        value = store.incr(name, delta)
    except ValueError:  # missing (or expired)
        if store.add(name, delta, timeout):
            return delta
        value = store.incr(name, delta)
    if value <= delta:
        # Django's Redis incr() checks the key exists, then INCRs: if it expired in
        # between, INCR re-created it without a TTL, and the counter would never reset.
        store.touch(name, timeout)
    return value


def cache_incr(name: str, delta: int = 1, *, timeout: int) -> int:
    """Add delta to a counter, creating it with `timeout`; return the count."""
    try:
        return _incr(cache, name, delta, timeout)
    except Exception:
        _unavailable(name)
        return _incr(fallback, name, delta, timeout)


def cache_add(name: str, timeout: int, value: object = 1) -> bool:
    """True if this caller set the gate now; False if it was set already."""
    try:
        return cache.add(name, value, timeout)
    except Exception:
        _unavailable(name)
        return fallback.add(name, value, timeout)


def cache_get_many(names: list[str]) -> dict:
    """The cached values of names, in one round trip."""
    try:
        return cache.get_many(names)
    except Exception:
        _unavailable(names[0])
        return fallback.get_many(names)


def cache_delete_many(names: list[str]) -> None:
    try:
        cache.delete_many(names)
    except Exception:
        _unavailable(names[0])
    fallback.delete_many(names)


def _unavailable(name: str) -> None:
    # The name's first two parts say what was lost (e.g. "kp:fail-ip"), never its subject.
    logger.warning("Cache unavailable for %s", ":".join(name.split(":")[:2]), exc_info=True)
