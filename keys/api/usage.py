"""What the API records about each key's use: last use, calls per day, callers, refusals.

A call never writes to the database or the cache for its record: it counts into this
process's journal (a few memory writes into a memory-mapped file, keys/lib/journal.py), and
a flush stores what the journal holds in one transaction at most once a second
(KEYS_USAGE_FLUSH_SECONDS): per-day counts, the last use (written at most once a minute per
key), each new caller address, and the refusals. So:

- nothing is lost when the cache (Redis) fails, hangs or restarts: counts never live there;
- a flush that meets a database error leaves its counts in the journal for the next flush,
  so a database stop loses nothing either;
- nothing is lost when a process dies, however it dies (SIGKILL from the OOM killer or from
  gunicorn's timeout too): its journal lives in the kernel's page cache, not in the process.
  A sibling or the next worker on the host adopts it (when it starts, and every
  ADOPT_EVERY_SECONDS), stores what it holds and removes it. Exactly once: a flush notes, in
  the transaction that stores the counts, how far the journal is stored (UsageJournal), so a
  process killed after that commit but before it marked the counts stored in its journal is
  not counted twice by its adopter. (The other order, clearing the journal before the commit,
  would lose the flush when the process is killed while the commit waits on a slow or hung
  database, which is when gunicorn's timeout kills workers.) The journal holds counts per
  name (key, day, address, API), not per call, so it grows with callers, not with traffic;
- the history grows with people, not traffic: a key's use reaches it once a day (the day's
  count, when the day is over) and on a first call from a new address (KEY_USED events);
- refusals of a known key are exact: the first of a (key, reason) is recorded within a
  second, later ones are counted and recorded when their minute ends, with their count
  (USE_DENIED events), so a flood costs the history at most one event a minute per process.
  A refusal names the key as its actor (`api:<identifier>`) only if the caller proved the
  password; the identifier is public, so anyone else is an "unauthenticated caller".
  A journal adopted from a dead process, and a process that exits, record all they hold.

Limits: journals are kept in KEYS_USAGE_JOURNAL_DIR on each host and adopted only by
processes of the same host and database. The machine going down (power, kernel) loses what was
not stored yet, at most a second's counts, or what accumulated during a database outage; so
does a directory that is wiped when the whole service stops (systemd's PrivateTmp=: point the
setting at a directory under /var/lib to keep journals across a restart of the service).
Without a usable directory (the setting empty; one we cannot create, or that another user can
write to, which is logged as an error), the journal is in the process's memory, and a killed
process loses what it counted since its last flush.

In gunicorn a background thread of each worker flushes every KEYS_USAGE_FLUSH_SECONDS (it
starts with the worker, and adopts first), and the worker stores everything when it exits.
Without the thread (tests, the shell), each recording call flushes when a flush is due.
"""

import atexit
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from keys import actions
from keys.audit import chain
from keys.lib import journal, throttle
from keys.lib.cache_counters import cache_add
from keys.models import (
    Api,
    ApiKey,
    AuditEvent,
    KeyApiUse,
    KeyCaller,
    KeyUsageDay,
    UsageJournal,
    local_date,
)

logger = logging.getLogger(__name__)

LAST_USE_EVERY_SECONDS = 60
DAY_CLOSE_EVERY_SECONDS = 60
ADOPT_EVERY_SECONDS = 10
# A name stored and not counted for this long leaves the journal; its next count writes it anew.
IDLE_SECONDS = 60
# A flood from many addresses must not grow a journal without bound: past this many names,
# further new addresses are not tracked (their calls are still counted).
MAX_ADDRESSES = 10_000
# How long a process that exits waits for a flush in progress (a hung database) before it
# leaves its journal to be adopted.
EXIT_WAIT_SECONDS = 10

# The history's actor for a refused caller that did not prove the key's password.
UNAUTHENTICATED = "unauthenticated caller"

# What a journal counts, by the first item of a name ("proved": the caller proved the
# key's password; a successful call always has):
USE = "u"  # (USE, key id, day ordinal, address or None, API slug or None): successful calls
REFUSED_FROM = "x"  # (REFUSED_FROM, key id, address, proved): refused as not allowed from there
# (REFUSAL, key id, identifier, reason, proved): refusals; note "address path" of the last
REFUSAL = "r"

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
MICROSECOND = datetime.timedelta(microseconds=1)


@dataclasses.dataclass
class _Window:
    """This process's current refusal window of one (identifier, reason)."""

    key_id: int
    since: float  # when the window opened (first refusal)
    reported: bool = False  # the window's first event is written
    ip: str | None = None
    path: str = ""


_lock = threading.Lock()  # counting and snapshots
_flush_lock = threading.Lock()  # one flush at a time: a snapshot is stored before the next
_journal: journal.Journal | None = None
_unsure = 0  # the generation of a store whose commit may or may not have happened
_windows: dict[tuple[str, str, bool], _Window] = {}  # (identifier, reason, proved)
_last_flush = 0.0
_last_day_close = 0.0
_next_adoption = 0.0
_flusher: tuple[int, threading.Thread] | None = None


def _now() -> float:
    return timezone.now().timestamp()


def _micros(at: datetime.datetime) -> int:
    return (at - EPOCH) // MICROSECOND


def _time(micros: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(microseconds=micros)


def _note(ip: str | None, path: str) -> str:
    return f"{ip or ''} {path}"


# --- recording (on the API path) ----------------------------------------------------------


def record_use(
    key_id: int, ip: str, at: datetime.datetime | None = None, *, api: str | None = None
) -> None:
    """Count one successful call of the key from `ip` (to catalogue API `api`, if one)."""
    at = at or timezone.now()
    name: tuple = (USE, key_id, local_date(at).toordinal(), ip, api)
    with _lock:
        book = _book()
        if len(book) >= MAX_ADDRESSES and ip is not None and name not in book:
            name = (USE, key_id, name[2], None, api)
        book.count(name, _micros(at))
    _after_recording()


def record_refusal(
    *, identifier: str, reason: str, ip: str | None, path: str, key_id: int, proved: bool = False
) -> None:
    """Count why a call with a known key was refused; recorded exactly, aggregated a minute.

    proved: the caller proved it holds the key's password. Only then is it the key calling,
    and only then does the key page offer to allow a refused address with one click.
    """
    at = timezone.now()
    with _lock:
        book = _book()
        window = _windows.get((identifier, reason, proved))
        if window is None:
            window = _windows[(identifier, reason, proved)] = _Window(key_id, at.timestamp())
        window.ip, window.path = ip, path
        book.count((REFUSAL, key_id, identifier, reason, proved), _micros(at), _note(ip, path))
        if reason == "ip_not_allowed" and ip is not None:  # listed on the key page
            refused_from = (REFUSED_FROM, key_id, ip, proved)
            if refused_from in book or len(book) < MAX_ADDRESSES:
                book.count(refused_from, _micros(at))
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
        window = _windows.get((identifier, reason, False))
        if window is None:
            return False
        book = _book()
        name = (REFUSAL, window.key_id, identifier, reason, False)
        book.count(name, _micros(timezone.now()), _note(window.ip, window.path))
    _after_recording()
    return True


def pending(key_id: int) -> int:
    """Calls of the key this process counted and has not stored yet (for display)."""
    with _lock:
        if _journal is None:
            return 0
        return sum(_journal.pending(n) for n in _journal.names() if n[:2] == (USE, key_id))


def _after_recording() -> None:
    if settings.KEYS_USAGE_FLUSH_THREAD:
        _ensure_flusher()
    elif time.monotonic() - _last_flush >= settings.KEYS_USAGE_FLUSH_SECONDS:
        flush()


# --- this process's journal ---------------------------------------------------------------


@functools.cache
def _deployment() -> str:
    """What names this deployment's journals: only processes on its database adopt them."""
    db = settings.DATABASES["default"]
    name = str(db["NAME"])
    if db["ENGINE"].endswith("sqlite3"):
        name = os.path.abspath(name)  # the same file, whatever directory a process runs in
    identity = [db["ENGINE"], name, db.get("HOST") or "", str(db.get("PORT") or "")]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def _book() -> journal.Journal:
    """This process's journal, made on its first count (call with _lock held)."""
    return _journal if _journal is not None else _open_journal()


def _open_journal() -> journal.Journal:
    """Make this process's journal: a file in KEYS_USAGE_JOURNAL_DIR, or memory without one."""
    global _journal
    directory = settings.KEYS_USAGE_JOURNAL_DIR
    if not directory:
        _journal = journal.Journal.in_memory()
        return _journal
    try:
        _journal = journal.Journal.create(Path(directory), _deployment())
    except OSError as error:
        logger.error(
            "Key use is counted in memory only, and lost if this process is killed: "
            "KEYS_USAGE_JOURNAL_DIR %s cannot be used (%s)",
            directory,
            error,
        )
        _journal = journal.Journal.in_memory()
    return _journal


def _forget_after_fork() -> None:
    """A forked child counts in a journal of its own, and never holds its parent's lock."""
    global _journal, _windows, _flusher
    if _journal is not None:
        _journal.close(remove=False)
    _journal, _windows, _flusher = None, {}, None


os.register_at_fork(after_in_child=_forget_after_fork)


# --- flushing -----------------------------------------------------------------------------


def flush() -> None:
    """Store what this process counted, in one transaction; on failure keep it for later."""
    with _flush_lock:
        _flush(final=False)


def _flush(*, final: bool) -> None:
    """Store what the journal holds (final: every refusal window ends now); adopt orphans."""
    global _last_flush, _unsure
    now = timezone.now()
    with _lock:
        _last_flush = time.monotonic()
        book = _journal
    if book is not None and book.id is not None and _unsure:
        # The last store failed, perhaps only after its commit went through: ask first, or
        # taking its counts again could store them twice.
        try:
            book.reconcile(_stored_through(book))
        except DatabaseError:
            logger.warning("Could not store key use yet; kept for the next flush", exc_info=True)
            return
    _unsure = 0
    taken: list[journal.Taken] = []
    if book is not None:
        with _lock:
            due = _due_refusals(book, now.timestamp(), final)

            def take(name: tuple) -> bool:
                # Uses always; refusals when due, or when no window waits for them.
                window = name[2:] if name[0] == REFUSAL else None
                return window is None or window in due or window not in _windows

            generation, taken = book.snapshot(take)
    if taken:
        assert book is not None  # only a book has anything to take
        try:
            with transaction.atomic():
                _store(_tally(taken), now)
                if book.id is not None:
                    _stored_up_to(book.id, generation)
        except DatabaseError:
            logger.warning("Could not store key use yet; kept for the next flush", exc_info=True)
            _unsure = generation
            with _lock:
                for name in due:  # their first event is still to be written
                    if name in _windows:
                        _windows[name].reported = False
            return
        with _lock:
            book.stored()
            book.release_idle(_micros(now), IDLE_SECONDS * 1_000_000)
    elif not 0 <= now.timestamp() - _last_day_close < DAY_CLOSE_EVERY_SECONDS:
        with transaction.atomic():
            _close_days_now_and_then(now)
    _adopt_now_and_then()


def _due_refusals(book: journal.Journal, now: float, final: bool) -> set[tuple[str, str, bool]]:
    """The refusal windows to record now: a window's first, and the rest when it ends."""
    due = set()
    for name, window in list(_windows.items()):
        # A clock set back (or a test travelling in time) ends the window too.
        over = final or not 0 <= now - window.since < settings.KEYS_REFUSAL_WINDOW_SECONDS
        if book.pending((REFUSAL, window.key_id, *name)) and (not window.reported or over):
            due.add(name)
            window.reported = True
            if over:
                window.since = now
        elif over:
            del _windows[name]
    return due


def _stored_through(book: journal.Journal) -> int | None:
    return (
        UsageJournal.objects.filter(journal=book.id)
        .values_list("stored_generation", flat=True)
        .first()
    )


def _stored_up_to(journal_id: str, generation: int) -> None:
    """Note, in the transaction that stores a snapshot, that the journal is stored that far."""
    if not UsageJournal.objects.filter(journal=journal_id).update(stored_generation=generation):
        UsageJournal.objects.create(journal=journal_id, stored_generation=generation)


# --- adopting the journals of processes that died -----------------------------------------


def _adopt_now_and_then() -> None:
    global _next_adoption
    directory = settings.KEYS_USAGE_JOURNAL_DIR
    if not directory or time.monotonic() < _next_adoption:
        return
    _next_adoption = time.monotonic() + ADOPT_EVERY_SECONDS
    for orphan in journal.orphans(Path(directory), _deployment()):
        try:
            _adopt(orphan)
        except DatabaseError:
            logger.warning("Could not store an adopted key use journal yet", exc_info=True)


def _adopt(orphan: journal.Journal) -> None:
    """Store what a dead process's journal holds, exactly once, and remove the journal."""
    removed = False
    try:
        orphan.reconcile(_stored_through(orphan))
        generation, taken = orphan.snapshot(lambda name: True)
        if taken:
            with transaction.atomic():
                _store(_tally(taken), timezone.now())
                if orphan.id is not None:  # a journal file always names its deployment
                    _stored_up_to(orphan.id, generation)
            orphan.stored()
            logger.info(
                "Stored the key use a process had not stored when it ended: %d calls, %d refusals",
                sum(t.count for t in taken if t.name[0] == USE),
                sum(t.count for t in taken if t.name[0] == REFUSAL),
            )
        orphan.close(remove=True)
        removed = True
        UsageJournal.objects.filter(journal=orphan.id).delete()
    finally:
        if not removed:
            orphan.close(remove=False)


# --- storing ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Tally:
    """What a snapshot adds up to, as the database stores it."""

    uses: dict[tuple[int, datetime.date], int] = dataclasses.field(default_factory=dict)
    last_use: dict[int, tuple[datetime.datetime, str | None]] = dataclasses.field(
        default_factory=dict
    )
    # (key, address, refused as not allowed) -> [calls, first, last, password proved]
    callers: dict[tuple[int, str, bool], list] = dataclasses.field(default_factory=dict)
    api_uses: dict[tuple[int, str], datetime.datetime] = dataclasses.field(default_factory=dict)
    # (key, identifier, reason, password proved, count, address, path)
    refusals: list[tuple] = dataclasses.field(default_factory=list)

    def add_caller(self, name: tuple[int, str, bool], calls: int, first, last, proved) -> None:
        seen = self.callers.setdefault(name, [0, first, last, proved])
        seen[0], seen[1] = seen[0] + calls, min(seen[1], first)
        seen[2], seen[3] = max(seen[2], last), seen[3] or proved


def _tally(taken: list[journal.Taken]) -> _Tally:
    tally = _Tally()
    for entry in taken:
        first, last = _time(entry.first), _time(entry.last)
        try:
            kind, key_id, *rest = entry.name
            if kind == USE:
                ordinal, ip, api = rest
                name = (key_id, datetime.date.fromordinal(ordinal))
                tally.uses[name] = tally.uses.get(name, 0) + entry.count
                latest = tally.last_use.get(key_id)
                if latest is None or (last, ip is not None) > (latest[0], latest[1] is not None):
                    tally.last_use[key_id] = (last, ip)
                if ip is not None:
                    tally.add_caller((key_id, ip, False), entry.count, first, last, True)
                if api is not None:
                    tally.api_uses[(key_id, api)] = max(
                        last, tally.api_uses.get((key_id, api), last)
                    )
            elif kind == REFUSED_FROM:
                ip, proved = rest
                tally.add_caller((key_id, ip, True), entry.count, first, last, bool(proved))
            elif kind == REFUSAL:
                identifier, reason, proved = rest
                ip, _, path = entry.note.partition(" ")
                tally.refusals.append(
                    (key_id, identifier, reason, bool(proved), entry.count, ip or None, path)
                )
            else:
                raise ValueError(kind)
        except (ValueError, TypeError):
            logger.error("A key use journal names %r, which this version cannot store", entry.name)
    return tally


def _store(tally: _Tally, now: datetime.datetime) -> None:
    # Keys are never deleted, but a test database is; an adopted journal may name its keys.
    keys = ApiKey.objects.select_related("owner").in_bulk(
        {name[0] for name in tally.uses}
        | {name[0] for name in tally.callers}
        | {refusal[0] for refusal in tally.refusals}
    )
    for (key_id, day), uses in tally.uses.items():
        if key_id in keys:
            _add_uses(key_id, day, uses)
    for key_id, (at, ip) in tally.last_use.items():
        last_use = {"last_used_at": at} | ({"last_used_ip": ip} if ip is not None else {})
        ApiKey.objects.filter(pk=key_id).filter(
            Q(last_used_at=None)
            | Q(last_used_at__lte=at - datetime.timedelta(seconds=LAST_USE_EVERY_SECONDS))
        ).update(**last_use)
    events = []  # for the history, appended together under one lock of its head
    for (key_id, ip, refused), (calls, first, last, proved) in tally.callers.items():
        if key_id in keys and _seen(keys[key_id], ip, refused, calls, first, last, proved):
            events.append(_first_call(keys[key_id], ip, first))
    apis = dict(Api.objects.values_list("slug", "pk"))
    for (key_id, slug), at in tally.api_uses.items():
        if key_id in keys and slug in apis:
            _api_used(key_id, apis[slug], at)
    for key_id, identifier, reason, proved, count, ip, path in tally.refusals:
        if key_id not in keys:
            continue
        events.append(
            dict(
                action=AuditEvent.Action.USE_DENIED,
                key=keys[key_id],
                actor_label=f"api:{identifier}" if proved else UNAUTHENTICATED,
                ip=ip,
                details={"reason": reason, "path": path, "count": count},
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


# --- the background flusher, and the end of a process -------------------------------------


def start() -> None:
    """Make this process's journal and start its flusher (gunicorn's post_worker_init).

    Off the first call's path; the flusher adopts what dead processes left before anything.
    """
    with _lock:
        _book()
    if settings.KEYS_USAGE_FLUSH_THREAD:
        _ensure_flusher()


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
        close_old_connections()
        try:
            flush()
        except Exception:  # never let the flusher die: the next second tries again
            logger.exception("Key use flush failed")
        time.sleep(settings.KEYS_USAGE_FLUSH_SECONDS)


def close() -> None:
    """Store everything before this process ends, then remove its journal.

    gunicorn's worker_exit calls it, and so does the interpreter at exit where a flusher
    runs. What cannot be stored now (the database is down, or a flush hangs) stays in the
    journal, which the next worker adopts.
    """
    global _journal
    if _journal is None or _journal.pid != os.getpid():
        return
    if not _flush_lock.acquire(timeout=EXIT_WAIT_SECONDS):
        return
    try:
        _flush(final=True)
        book = _journal
        if book is None or any(book.pending(name) for name in book.names()):
            return
        with _lock:
            _journal = None
            book.close(remove=True)
        if book.id is not None:
            UsageJournal.objects.filter(journal=book.id).delete()
    except Exception:
        logger.exception("Key use flush at exit failed; the journal is left to be adopted")
    finally:
        _flush_lock.release()


@atexit.register
def _close_at_exit() -> None:
    if _flusher is not None and _flusher[0] == os.getpid():
        close()


def forget() -> None:
    """Drop what this process counted and has not stored yet (tests, whose every database
    starts empty, so a key id counted in one may name another key in the next)."""
    global _journal, _windows, _unsure
    with _lock:
        if _journal is not None:
            _journal.close(remove=True)
        _journal, _windows, _unsure = None, {}, 0
