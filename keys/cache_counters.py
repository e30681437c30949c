"""Counters, gates and reads in the cache that the throttle and usage records share.

An unavailable cache degrades what they count, never the answer a caller gets: the
functions log and report "nothing counted" (or "nothing cached") instead of raising.
"""

import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)


def cache_incr(name: str, delta: int = 1, *, timeout: int) -> int | None:
    """Add delta to a counter, creating it with `timeout`; None if the cache is unavailable."""
    try:
        try:
            value = cache.incr(name, delta)
        except ValueError:  # missing (or expired)
            if cache.add(name, delta, timeout):
                return delta
            value = cache.incr(name, delta)
        if value <= delta:
            # Django's Redis incr() checks the key exists, then INCRs: if it expired in
            # between, INCR re-created it without a TTL, and the counter would never reset.
            cache.touch(name, timeout)
        return value
    except Exception:
        _unavailable(name)
        return None


def cache_add(name: str, timeout: int, value: object = 1) -> bool:
    """True if this caller set the gate now; False if it was set, or the cache is down."""
    try:
        return cache.add(name, value, timeout)
    except Exception:
        _unavailable(name)
        return False


def cache_get_many(names: list[str]) -> dict:
    """The cached values of names, in one round trip; none while the cache is unavailable."""
    try:
        return cache.get_many(names)
    except Exception:
        _unavailable(names[0])
        return {}


def cache_delete_many(names: list[str]) -> None:
    try:
        cache.delete_many(names)
    except Exception:
        _unavailable(names[0])


def _unavailable(name: str) -> None:
    # The name's first two parts say what was lost (e.g. "kp:fail-ip"), never its subject.
    logger.warning("Cache unavailable for %s", ":".join(name.split(":")[:2]), exc_info=True)
