"""What the API records about each key's use: last use, calls per day, refused calls.

Successful calls never write per call (that would serialise every call on the database):
they are counted in the cache, and at most once a minute per key one transaction stores the
counts and the last-used time and IP, and appends a `KEY_USED` audit event per day counted
(DESIGN §5: key use reaches the history). Refusals of a known key become `USE_DENIED` audit
events, at most one per (key, reason) per minute, carrying how many calls it stands for.

Lost if a process dies (with the local-memory cache) or the cache is flushed: the counts and
refusal repeats of at most the last minute. Until the key's next call after that minute,
those counts wait in the cache; the key page adds them to what it shows (`uses_per_day`)
without storing them, since a page view never writes (all of them with a shared cache such
as Redis, or those of its own process).
"""

import datetime
import logging

from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from keys import audit
from keys.models import ApiKey, AuditEvent, KeyUsageDay, local_date
from portal.cache_counters import cache_add, cache_incr

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
            return  # nothing to store: take no write lock
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


def uses_per_day(key: ApiKey, days: int = 14) -> list[KeyUsageDay]:
    """The key's successful calls per day, newest first: the stored counts plus those still
    waiting in the cache, which this only reads (they are stored by the key's next flush)."""
    rows = list(KeyUsageDay.objects.filter(key=key).order_by("-day")[:days])
    pending = _pending_uses(key.pk)
    for row in rows:
        row.uses += pending.pop(row.day, 0)
    rows += [KeyUsageDay(key=key, day=day, uses=uses) for day, uses in pending.items()]
    return sorted(rows, key=lambda row: row.day, reverse=True)[:days]


def _pending_uses(key_id: int) -> dict[datetime.date, int]:
    today = local_date()
    days = {_uses_name(key_id, day): day for day in (today - datetime.timedelta(days=1), today)}
    try:
        counts = cache.get_many(list(days))
    except Exception:
        logger.warning("Cache unavailable for the pending usage counts", exc_info=True)
        return {}
    return {days[name]: uses for name, uses in counts.items() if uses}


def _record_uses(key_id: int, counted: list, *, ip: str | None, at: datetime.datetime) -> None:
    """One KEY_USED event per day counted: two only for a flush that spans midnight."""
    key = ApiKey.objects.select_related("owner").get(pk=key_id)
    for day, uses in counted:
        audit.record(
            AuditEvent.Action.KEY_USED,
            key=key,
            actor_label=f"api:{key.identifier}",
            ip=ip,  # the caller whose call flushed; None when no call did
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
