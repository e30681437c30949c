"""What the API records about each key's use: last use, calls per day, callers, refusals.

A call never writes to the database or the cache for its record: it adds to this process's
buffer (a few dictionary updates under a lock), and a flush stores the buffer in one
transaction at most once a second (KEYS_USAGE_FLUSH_SECONDS): per-day counts, the last use
(written at most once a minute per key), each new caller address, and the refusals. So:

- nothing is lost when the cache (Redis) fails, hangs or restarts: counts never live there;
- a flush that meets a database error keeps its counts and tries again next second, so a
  database stop loses nothing either; only a process killed with SIGKILL loses what it
  counted since its last flush (at most one second);
- the history grows with people, not traffic: a key's use reaches it once a day (the day's
  count, when the day is over) and on a first call from a new address (KEY_USED events);
- refusals of a known key are exact: the first of a (key, reason) is recorded within a
  second, later ones are counted and recorded when their minute ends, with their count
  (USE_DENIED events), so a flood costs the history at most one event a minute per process.
  A refusal names the key as its actor (`api:<identifier>`) only if the caller proved the
  password; the identifier is public, so anyone else is an "unauthenticated caller".

In gunicorn a background thread of each worker flushes every KEYS_USAGE_FLUSH_SECONDS, and
the worker flushes once more when it exits. Without the thread (tests, the shell), each
recording call flushes when a flush is due.
"""

import atexit
import dataclasses
import datetime
import logging
import os
import threading
import time

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from keys import actions
from keys.audit import chain
from keys.lib import throttle
from keys.lib.cache_counters import cache_add
from keys.models import Api, ApiKey, AuditEvent, KeyApiUse, KeyCaller, KeyUsageDay, local_date

logger = logging.getLogger(__name__)

LAST_USE_EVERY_SECONDS = 60
DAY_CLOSE_EVERY_SECONDS = 60
# A flood from many addresses must not grow a process's memory without bound: past this many
# distinct (key, address) pairs between two flushes, further new addresses are not tracked
# (their calls are still counted).
MAX_ADDRESSES = 10_000
# The history's actor for a refused caller that did not prove the key's password.
UNAUTHENTICATED = "unauthenticated caller"


@dataclasses.dataclass
class _Refusals:
    """Refusals of one (key, reason) in this process's current window."""

    key_id: int
    since: float  # when the window opened (first refusal)
    count: int = 0  # counted since the last event
    reported: bool = False  # the window's first event is written
    ip: str | None = None
    path: str = ""


class _Buffer:
    def __init__(self) -> None:
        self.uses: dict[tuple[int, datetime.date], int] = {}
        self.last_use: dict[int, tuple[datetime.datetime, str]] = {}
        # (key, address, refused as not allowed) -> [calls, first, last, password proved]
        self.callers: dict[tuple[int, str, bool], list] = {}
        self.api_uses: dict[tuple[int, str], datetime.datetime] = {}
        # (identifier, reason, password proved) -> its window
        self.refusals: dict[tuple[str, str, bool], _Refusals] = {}

    def count_caller(
        self, key_id: int, ip: str | None, refused: bool, at, proved: bool = True
    ) -> None:
        if ip is None:
            return
        name = (key_id, ip, refused)
        if name in self.callers:
            seen = self.callers[name]
            seen[0], seen[2], seen[3] = seen[0] + 1, at, seen[3] or proved
        elif len(self.callers) < MAX_ADDRESSES:
            self.callers[name] = [1, at, at, proved]

    def merge_back(self, taken: "_Buffer") -> None:
        """Put counts whose flush failed back, in front of what came since."""
        for day, uses in taken.uses.items():
            self.uses[day] = self.uses.get(day, 0) + uses
        for key_id, last in taken.last_use.items():
            self.last_use.setdefault(key_id, last)
        for caller, (calls, first, seen_last, proved) in taken.callers.items():
            seen = self.callers.setdefault(caller, [0, first, seen_last, proved])
            seen[0], seen[1], seen[3] = seen[0] + calls, first, seen[3] or proved
        for api_use, at in taken.api_uses.items():
            self.api_uses.setdefault(api_use, at)


_lock = threading.Lock()
_buffer = _Buffer()
_last_flush = 0.0
_last_day_close = 0.0
_flusher: tuple[int, threading.Thread] | None = None


def _now() -> float:
    return timezone.now().timestamp()


# --- recording (on the API path) ----------------------------------------------------------


def record_use(
    key_id: int, ip: str, at: datetime.datetime | None = None, *, api: str | None = None
) -> None:
    """Count one successful call of the key from `ip` (to catalogue API `api`, if one)."""
    at = at or timezone.now()
    with _lock:
        name = (key_id, local_date(at))
        _buffer.uses[name] = _buffer.uses.get(name, 0) + 1
        _buffer.last_use[key_id] = (at, ip)
        _buffer.count_caller(key_id, ip, False, at)
        if api is not None:
            _buffer.api_uses[(key_id, api)] = at
    _after_recording()


def record_refusal(
    *, identifier: str, reason: str, ip: str | None, path: str, key_id: int, proved: bool = False
) -> None:
    """Count why a call with a known key was refused; recorded exactly, aggregated a minute.

    proved: the caller proved it holds the key's password. Only then is it the key calling,
    and only then does the key page offer to allow a refused address with one click.
    """
    name = (identifier, reason, proved)
    with _lock:
        entry = _buffer.refusals.get(name)
        if entry is None:
            entry = _buffer.refusals[name] = _Refusals(key_id, since=_now())
        entry.count += 1
        entry.ip, entry.path = ip, path
        if reason == "ip_not_allowed":  # listed on the key page
            _buffer.count_caller(key_id, ip, True, timezone.now(), proved)
    _after_recording()


def record_throttled(*, identifier: str, ip: str | None, path: str) -> None:
    """Record a 429 for the key the identifier names, if it names one.

    The caller is already over a limit and the identifier may be made up: it is looked up
    at most once a second per client network (a cache gate), and an unknown one leaves
    nothing behind.
    """
    if count_repeat(identifier, "throttled"):
        return
    if not cache_add(f"kp:throttled-lookup:{throttle.network(ip)}", 1):
        return
    key_id = ApiKey.objects.filter(identifier=identifier).values_list("pk", flat=True).first()
    if key_id is not None:
        record_refusal(identifier=identifier, reason="throttled", ip=ip, path=path, key_id=key_id)


def count_repeat(identifier: str, reason: str) -> bool:
    """If this (identifier, reason) is in its window here, count one more and say so.

    Lets a caller skip looking the identifier up again (a throttled flood).
    """
    with _lock:
        entry = _buffer.refusals.get((identifier, reason, False))
        if entry is None:
            return False
        entry.count += 1
    _after_recording()
    return True


def _after_recording() -> None:
    if settings.KEYS_USAGE_FLUSH_THREAD:
        _ensure_flusher()
    elif time.monotonic() - _last_flush >= settings.KEYS_USAGE_FLUSH_SECONDS:
        flush()


# --- flushing -----------------------------------------------------------------------------


def flush() -> None:
    """Store what this process counted, in one transaction; on failure keep it for later."""
    global _last_flush, _buffer
    now = timezone.now()
    with _lock:
        _last_flush = time.monotonic()
        taken, _buffer = _buffer, _Buffer()
        _buffer.refusals = taken.refusals  # windows outlive a flush
        due = _due_refusals(now.timestamp())
    if not (taken.uses or taken.last_use or taken.callers or taken.api_uses or due):
        if not 0 <= now.timestamp() - _last_day_close < DAY_CLOSE_EVERY_SECONDS:
            with transaction.atomic():
                _close_days_now_and_then(now)
        return
    try:
        with transaction.atomic():
            _store(taken, due, now)
    except DatabaseError:
        logger.warning("Could not store key use yet; kept for the next flush", exc_info=True)
        with _lock:
            _buffer.merge_back(taken)
            for name, entry in due:
                current = _buffer.refusals.setdefault(name, entry)
                if current is not entry:
                    current.count += entry.count


def _due_refusals(now: float) -> list[tuple[tuple[str, str, bool], _Refusals]]:
    """Take the refusals to record now: a window's first, and the rest when it ends."""
    due = []
    for name, entry in list(_buffer.refusals.items()):
        # A clock set back (or a test travelling in time) ends the window too.
        window_over = not 0 <= now - entry.since < settings.KEYS_REFUSAL_WINDOW_SECONDS
        if entry.count and (not entry.reported or window_over):
            due.append((name, dataclasses.replace(entry)))
            entry.count, entry.reported = 0, True
            if window_over:
                entry.since = now
        elif window_over:
            del _buffer.refusals[name]
    return due


def _store(taken: _Buffer, due: list, now: datetime.datetime) -> None:
    for (key_id, day), uses in taken.uses.items():
        _add_uses(key_id, day, uses)
    for key_id, (at, ip) in taken.last_use.items():
        ApiKey.objects.filter(pk=key_id).filter(
            Q(last_used_at=None)
            | Q(last_used_at__lte=at - datetime.timedelta(seconds=LAST_USE_EVERY_SECONDS))
        ).update(last_used_at=at, last_used_ip=ip)
    keys = ApiKey.objects.select_related("owner").in_bulk(
        {name[0] for name in taken.callers} | {entry.key_id for _name, entry in due}
    )
    events = []  # for the history, appended together under one lock of its head
    for (key_id, ip, refused), (calls, first, last, proved) in taken.callers.items():
        if key_id in keys and _seen(keys[key_id], ip, refused, calls, first, last, proved):
            events.append(_first_call(keys[key_id], ip, first))
    apis = dict(Api.objects.values_list("slug", "pk"))
    for (key_id, slug), at in taken.api_uses.items():
        if slug in apis:
            _api_used(key_id, apis[slug], at)
    for (identifier, reason, proved), entry in due:
        if entry.key_id not in keys:
            continue  # keys are never deleted, but a test database is
        events.append(
            dict(
                action=AuditEvent.Action.USE_DENIED,
                key=keys[entry.key_id],
                actor_label=f"api:{identifier}" if proved else UNAUTHENTICATED,
                ip=entry.ip,
                details={"reason": reason, "path": entry.path, "count": entry.count},
            )
        )
    if events:
        chain.record_many(events)
    _close_days_now_and_then(now)


def _close_days_now_and_then(now: datetime.datetime) -> None:
    # Once a minute per process is enough to record a finished day soon after midnight.
    global _last_day_close
    if not 0 <= now.timestamp() - _last_day_close < DAY_CLOSE_EVERY_SECONDS:
        close_finished_days(local_date(now))
        # Renewed keys whose overlap ended: the API refuses them already; record it too.
        actions.revoke_replaced_keys(now)
        actions.end_password_overlaps(now)
        _last_day_close = now.timestamp()


def _add_uses(key_id: int, day: datetime.date, uses: int) -> None:
    rows = KeyUsageDay.objects.filter(key_id=key_id, day=day)
    if rows.update(uses=F("uses") + uses):
        return
    try:
        with transaction.atomic():
            KeyUsageDay.objects.create(key_id=key_id, day=day, uses=uses)
    except IntegrityError:  # another process created the day's row first
        rows.update(uses=F("uses") + uses)


def _seen(key: ApiKey, ip: str, refused: bool, calls: int, first, last, proved: bool) -> bool:
    """Count the caller's address; True if it is a first successful call from it.

    An address stays proved once a caller from it proved the password (an unproved caller
    later cannot take that back, nor can one make an address proved)."""
    known = KeyCaller.objects.filter(key=key, ip=ip, refused=refused)
    changes = {"calls": F("calls") + calls, "last_seen": last}
    if proved:
        changes["password_proved"] = True
    if known.update(**changes):
        return False
    try:
        with transaction.atomic():
            KeyCaller.objects.create(
                key=key,
                ip=ip,
                refused=refused,
                calls=calls,
                first_seen=first,
                last_seen=last,
                password_proved=proved,
            )
    except IntegrityError:  # another process saw it first, and recorded it
        known.update(**changes)
        return False
    return not refused  # refusals are in the history as USE_DENIED events already


def _first_call(key: ApiKey, ip: str, first) -> dict:
    """The history's record of a first successful call from an address."""
    return dict(
        action=AuditEvent.Action.KEY_USED,
        key=key,
        actor_label=f"api:{key.identifier}",
        ip=ip,
        details={"first_call_from": ip, "day": local_date(first).isoformat()},
        at=first,
    )


def _api_used(key_id: int, api_id: int, at: datetime.datetime) -> None:
    rows = KeyApiUse.objects.filter(key_id=key_id, api_id=api_id)
    if rows.update(last_used_at=at):
        return
    try:
        with transaction.atomic():
            KeyApiUse.objects.create(key_id=key_id, api_id=api_id, last_used_at=at)
    except IntegrityError:
        rows.update(last_used_at=at)


def close_finished_days(today: datetime.date) -> int:
    """Record each finished day's count of every key in the history, once; return how many.

    The conditional update makes exactly one process record each day, whichever gets there.
    """
    recorded = 0
    finished = KeyUsageDay.objects.filter(day__lt=today, recorded=False)
    for row in finished.select_related("key__owner").order_by("day", "pk"):
        if not KeyUsageDay.objects.filter(pk=row.pk, recorded=False).update(recorded=True):
            continue
        chain.record(
            AuditEvent.Action.KEY_USED,
            key=row.key,
            actor_label=f"api:{row.key.identifier}",
            details={"uses": row.uses, "day": row.day.isoformat()},
        )
        recorded += 1
    return recorded


def pending(key_id: int) -> int:
    """Calls of the key this process counted and has not stored yet (for display)."""
    with _lock:
        return sum(uses for (kid, _day), uses in _buffer.uses.items() if kid == key_id)


# --- the background flusher ---------------------------------------------------------------


def _ensure_flusher() -> None:
    global _flusher
    pid = os.getpid()
    if _flusher is not None and _flusher[0] == pid and _flusher[1].is_alive():
        return
    with _lock:
        if _flusher is not None and _flusher[0] == pid and _flusher[1].is_alive():
            return
        thread = threading.Thread(target=_flush_forever, name="key-usage-flush", daemon=True)
        _flusher = (pid, thread)  # a forked child sees another pid and starts its own
        thread.start()


def _flush_forever() -> None:
    while True:
        time.sleep(settings.KEYS_USAGE_FLUSH_SECONDS)
        close_old_connections()
        try:
            flush()
        except Exception:  # never let the flusher die: the next second tries again
            logger.exception("Key use flush failed")


@atexit.register
def _flush_at_exit() -> None:
    if _flusher is not None and _flusher[0] == os.getpid():
        try:
            flush()
        except Exception:
            logger.exception("Key use flush at exit failed")


def forget() -> None:
    """Drop what this process counted and has not stored yet (tests, whose every database
    starts empty, so a key id counted in one may name another key in the next)."""
    global _buffer
    with _lock:
        _buffer = _Buffer()
