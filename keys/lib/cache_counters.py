"""Counters, gates and reads in the cache that the throttle and usage records share.

An unavailable cache degrades what they count, never the answer a caller gets: while the
shared cache (Redis) cannot be reached, each process counts in its own memory (`fallback`),
so throttling goes on per process instead of stopping; nothing here ever raises.

A cache backend may count a failure in one round trip by offering
`count_in_window(name, since, now, timeout)` (portal.cache.RedisCache does); otherwise it
takes Django's incr() and add().
"""

import logging

from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone

logger = logging.getLogger(__name__)

# This process's own counters, used only while the shared cache is unavailable.
fallback = LocMemCache("keys-cache-counters-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
# This process's own copy of what it read from the shared cache and may keep a while without
# asking again (keys.api.check: passwords verified for a key revision).
here = LocMemCache("keys-cache-here", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
# Whether `fallback` was ever written in this process: until then it is empty, and reads
# (on the API's refusal paths) need not look at it.
_fell_back = False


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


def _count_in_window(store, name: str, since: str, now: float, timeout: int) -> int:
    count = _incr(store, name, 1, timeout)
    if count == 1:
        store.add(since, now, timeout)
    return count


def cache_count(name: str, since: str, *, timeout: int) -> int:
    """Add one to the counter `name`; the first one opens its window of `timeout` seconds,
    whose start is kept under `since`. Return the count."""
    now = timezone.now().timestamp()
    try:
        if count_in_window := getattr(cache, "count_in_window", None):
            return count_in_window(name, since, now, timeout)
        return _count_in_window(cache, name, since, now, timeout)
    except Exception:
        _unavailable(name)
        return _count_in_window(fallback, name, since, now, timeout)


def cache_add(name: str, timeout: int, value: object = 1) -> bool:
    """True if this caller set the gate now; False if it was set already."""
    try:
        return cache.add(name, value, timeout)
    except Exception:
        _unavailable(name)
        return fallback.add(name, value, timeout)


def cache_get_many(names: list[str]) -> dict:
    """The cached values of names, in one round trip.

    What this process counted in `fallback` counts too (the larger value wins): a shared
    cache that answers reads but refuses the counting (full, or a user not allowed to run
    scripts) must not leave the throttle reading zeros."""
    try:
        values = cache.get_many(names)
    except Exception:
        _unavailable(names[0])
        return fallback.get_many(names)
    if not _fell_back:
        return values
    for name, counted_here in fallback.get_many(names).items():
        if name not in values or counted_here > values[name]:
            values[name] = counted_here
    return values


def cache_delete_many(names: list[str]) -> None:
    try:
        cache.delete_many(names)
    except Exception:
        _unavailable(names[0])
    fallback.delete_many(names)


def _unavailable(name: str) -> None:
    global _fell_back
    _fell_back = True
    # The name's first two parts say what was lost (e.g. "kp:fail-ip"), never its subject.
    logger.warning("Cache unavailable for %s", ":".join(name.split(":")[:2]), exc_info=True)
