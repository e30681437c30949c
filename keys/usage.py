"""What the API records about each key's use: last use, calls per day, refused calls.

Successful calls never write per call (that would serialise every call on the database):
they are counted in the cache, and at most once a minute per key one transaction stores the
counts and the last-used time and IP, and appends a `KEY_USED` audit event per day counted
(DESIGN §5: key use reaches the history). Refusals of a known key become `USE_DENIED` audit
events, at most one per (key, reason) per minute, carrying how many calls it stands for.

Lost if a process dies (with the local-memory cache) or the cache is flushed: the counts and
refusal repeats of at most the last minute. Until the key's next call after that minute,
those counts wait in the cache; the key page flushes them (`flush_pending`) when it is
viewed, which reaches them all with a shared cache (Redis), or those of its own process.
"""

import datetime
import logging

from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from keys import audit, throttle
from keys.cache_counters import cache_add, cache_incr
from keys.models import ApiKey, AuditEvent, KeyUsageDay, local_date

logger = logging.getLogger(__name__)

FLUSH_EVERY_SECONDS = 60
REFUSAL_EVERY_SECONDS = 60
PENDING_COUNT_SECONDS = 3 * 24 * 3600  # a pending count outlives a quiet weekend


def _cache_take(name: str) -> int:
    """Read a counter and subtract what was read (others may add meanwhile)."""
    try:
        value = cache.get(name) or 0
        if value:
            cache.decr(name, value)
        return value
    except ValueError:  # expired between get and decr: it is gone, count what we read
        return value
    except Exception:
        logger.warning("Cache unavailable for a usage counter", exc_info=True)
        return 0


# --- successful calls ---------------------------------------------------------------------


def _uses_name(key_id: int, day: datetime.date) -> str:
    return f"kp:uses:{key_id}:{day.isoformat()}"


def record_use(key_id: int, ip: str, at: datetime.datetime | None = None) -> None:
    """Count one successful call; at most once a minute per key, write what was counted."""
    at = at or timezone.now()
    cache_incr(_uses_name(key_id, local_date(at)), timeout=PENDING_COUNT_SECONDS)
    if cache_add(f"kp:flush:{key_id}", FLUSH_EVERY_SECONDS):
        flush(key_id, ip=ip, at=at)


def flush(key_id: int, *, ip: str | None = None, at: datetime.datetime | None = None) -> None:
    """Store the pending per-day counts, and the last use if the stored one is a minute old;
    record the counts in the audit history, in the same transaction.

    The DB condition keeps "at most once a minute" across processes whose caches differ.
    """
    at = at or timezone.now()
    today = local_date(at)
    try:
        counted = [
            (day, uses)
            for day in (today - datetime.timedelta(days=1), today)
            if (uses := _cache_take(_uses_name(key_id, day)))
        ]
        if not counted and ip is None:
            return  # nothing to store (a key page view): take no write lock
        with transaction.atomic():
            for day, uses in counted:
                _add_uses(key_id, day, uses)
            if ip is not None:
                ApiKey.objects.filter(pk=key_id).filter(
                    Q(last_used_at=None)
                    | Q(last_used_at__lt=at - datetime.timedelta(seconds=FLUSH_EVERY_SECONDS))
                ).update(last_used_at=at, last_used_ip=ip)
            if counted:
                _record_uses(key_id, counted, ip=ip, at=at)
    except DatabaseError:
        # A busy database must not fail the call it records; the counts of this flush are
        # lost, as when a process dies.
        logger.warning("Could not store the use of key %s", key_id, exc_info=True)


def flush_pending(key: ApiKey) -> None:
    """Store the counts this process (or a shared cache) still holds for `key`."""
    flush(key.pk)


def _record_uses(key_id: int, counted: list, *, ip: str | None, at: datetime.datetime) -> None:
    """One KEY_USED event per day counted: two only for a flush that spans midnight."""
    key = ApiKey.objects.select_related("owner").get(pk=key_id)
    for day, uses in counted:
        audit.record(
            AuditEvent.Action.KEY_USED,
            key=key,
            actor_label=f"api:{key.identifier}",
            ip=ip,  # the caller whose call flushed; None when the key page flushes
            details={"uses": uses, "day": day.isoformat()},
            at=at,
        )


def _add_uses(key_id: int, day: datetime.date, uses: int) -> None:
    rows = KeyUsageDay.objects.filter(key_id=key_id, day=day)
    if rows.update(uses=F("uses") + uses):
        return
    try:
        with transaction.atomic():
            KeyUsageDay.objects.create(key_id=key_id, day=day, uses=uses)
    except IntegrityError:  # another process created the day's row first
        rows.update(uses=F("uses") + uses)


# --- refused calls ------------------------------------------------------------------------


def _refusal_names(identifier: str, reason: str) -> tuple[str, str]:
    return f"kp:denied:{identifier}:{reason}", f"kp:denied-n:{identifier}:{reason}"


def count_repeat(identifier: str, reason: str) -> bool:
    """If this refusal was recorded within the minute, count it as a repeat and say so."""
    gate, repeats = _refusal_names(identifier, reason)
    try:
        recorded = cache.get(gate) is not None
    except Exception:
        logger.warning("Cache unavailable for a refusal gate", exc_info=True)
        return True  # cannot tell: record nothing rather than an event per call
    if recorded:
        cache_incr(repeats, timeout=PENDING_COUNT_SECONDS)
    return recorded


def record_refusal(*, identifier: str, reason: str, ip: str | None, path: str, key_id: int) -> None:
    """Record why a call with a known key was refused, aggregated per (key, reason) a minute.

    A flood costs one cache operation per call and one audit event per minute: the event
    carries `count`, this call plus the repeats since the previous event.
    """
    gate, repeats = _refusal_names(identifier, reason)
    if not cache_add(gate, REFUSAL_EVERY_SECONDS):
        cache_incr(repeats, timeout=PENDING_COUNT_SECONDS)
        return
    count = 1 + _cache_take(repeats)
    try:
        key = ApiKey.objects.select_related("owner").get(pk=key_id)
        audit.record(
            AuditEvent.Action.USE_DENIED,
            key=key,
            actor_label=f"api:{identifier}",
            ip=ip,
            details={"reason": reason, "path": path, "count": count},
        )
    except DatabaseError:
        logger.warning("Could not record a refused call (%s)", reason, exc_info=True)


def record_throttled(*, identifier: str, ip: str | None, path: str) -> None:
    """Record a 429 for the key the identifier names, if it names one.

    The caller is already over a limit and the identifier may be made up: nothing is
    written to the cache for an unknown one (a flood of made-up identifiers must not push
    the throttle counters out of a size-bounded cache), and it is looked up at most once a
    second per client network.
    """
    if count_repeat(identifier, "throttled"):
        return
    if not cache_add(f"kp:throttled-lookup:{throttle.network(ip)}", 1):
        return
    key_id = ApiKey.objects.filter(identifier=identifier).values_list("pk", flat=True).first()
    if key_id is not None:
        record_refusal(identifier=identifier, reason="throttled", ip=ip, path=path, key_id=key_id)
