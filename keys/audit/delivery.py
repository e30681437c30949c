"""Delivery of the audit history to stream destinations: at least once, in order.

Run by `manage.py stream_audit` on one or more app servers. For each destination:

1. Claim it: in a short transaction, lock its row (SELECT … FOR UPDATE SKIP LOCKED on
   PostgreSQL; on SQLite the IMMEDIATE transaction holds the database's write lock) and take
   a lease unless another sender holds an unexpired one. The lock is not held while sending:
   on SQLite that would stop every write to the portal for as long as a receiver hangs. The
   lease (longer than any one send may take) keeps two senders from sending the same batch
   at once; a sender that dies leaves a lease that lapses. Each acknowledgement renews it, so
   a sender that holds it only reads the row.
2. Read the events after `last_acked_seq`, oldest first, at most `batch_size`.
3. Send them; only when the receiver acknowledges (keys.lib.stream_transports says what that
   means per transport) move `last_acked_seq` forward, and only if it still stands where the
   batch began (a replay meanwhile wins).

So a failure, a restart or a killed sender resends from the last acknowledged event:
duplicates are possible, a gap never. Receivers de-duplicate on `seq`.

Each destination has its own thread with short timeouts and its own back-off, so a receiver
that fails or hangs delays only itself.
"""

import datetime
import logging
import socket
import threading
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from keys.audit.export import event_document
from keys.audit.hashing import format_at, to_json
from keys.lib import stream_transports as transports
from keys.models import AuditEvent, StreamDestination

logger = logging.getLogger("keys.audit.stream")

POLL_SECONDS = 0.5  # how often a caught-up destination looks for new events


def lease_seconds() -> int:
    """Longer than one batch may take: connect, TLS handshake, send and answer, each within
    the timeout. A sender killed mid-batch holds its destination this long at most."""
    return 4 * settings.AUDIT_STREAM_TIMEOUT_SECONDS + 5


@dataclass
class Outcome:
    sent: int = 0
    error: str | None = None
    busy: bool = False  # another sender holds the destination

    @property
    def caught_up(self) -> bool:
        return self.error is None and not self.busy and self.sent == 0


def _claim(pk: int, owner: str) -> StreamDestination | None:
    """The destination, if this sender holds it or may take it; None if another sender does."""
    now = timezone.now()
    lease = datetime.timedelta(seconds=lease_seconds())
    # Held, with more than half the lease left: a plain read. Each acknowledgement renews the
    # lease, so a busy destination costs one write per batch; on SQLite every write waits for
    # the one write lock that each audit event also takes.
    held = StreamDestination.objects.filter(
        pk=pk, is_active=True, lease_owner=owner, lease_until__gt=now + lease / 2
    ).first()
    if held is not None:
        return held
    with transaction.atomic():
        destination = (
            StreamDestination.objects.select_for_update(skip_locked=True)
            .filter(pk=pk, is_active=True)
            .filter(Q(lease_owner=owner) | Q(lease_until=None) | Q(lease_until__lt=now))
            .first()
        )
        if destination is None:
            return None
        destination.lease_owner = owner
        destination.lease_until = now + lease
        destination.save(update_fields=["lease_owner", "lease_until"])
    return destination


def release(pk: int, owner: str) -> None:
    StreamDestination.objects.filter(pk=pk, lease_owner=owner).update(
        lease_owner="", lease_until=None
    )


def deliver_batch(pk: int, owner: str) -> Outcome:
    """Send the next batch of one destination, if this sender may; what happened."""
    destination = _claim(pk, owner)
    if destination is None:
        return Outcome(busy=True)
    start = destination.last_acked_seq
    events = list(
        AuditEvent.objects.in_chain()
        .filter(seq__gt=start)
        .select_related("owner")
        .order_by("seq")[: destination.batch_size]
    )
    if not events:
        return Outcome()
    try:
        send(destination, events)
    except transports.DeliveryError as error:
        StreamDestination.objects.filter(pk=pk, lease_owner=owner).update(
            failed=F("failed") + 1, last_error=str(error)[:300], last_error_at=timezone.now()
        )
        logger.warning(
            "Audit stream %s: events %s-%s not delivered: %s",
            destination.name,
            events[0].seq,
            events[-1].seq,
            error,
        )
        return Outcome(error=str(error))
    now = timezone.now()
    StreamDestination.objects.filter(pk=pk, lease_owner=owner, last_acked_seq=start).update(
        last_acked_seq=events[-1].seq,
        sent=F("sent") + len(events),
        last_sent_at=now,
        lease_until=now + datetime.timedelta(seconds=lease_seconds()),
    )
    return Outcome(sent=len(events))


def send(destination: StreamDestination, events: list[AuditEvent]) -> str:
    """Send events to the destination; the receiver's acknowledgement, or DeliveryError."""
    documents = [event_document(event) for event in events]
    if destination.is_webhook:
        body = "".join(to_json(document) + "\n" for document in documents).encode()
        return _post(destination, body)
    frames = [
        transports.syslog_message(
            at=format_at(event.at),
            hostname=socket.gethostname(),
            msgid=event.action,
            params={
                "seq": event.seq,
                "hash": event.hash,
                "prev_hash": event.prev_hash,
                "signature": event.signature,
            },
            msg=to_json(document),
        )
        for event, document in zip(events, documents, strict=True)
    ]
    return _syslog(destination, frames)


TEST_MESSAGE = "Key Portal test message: not an audit event, nothing to store."


def send_test(destination: StreamDestination) -> str:
    """Send one message that is not an audit event (`"test": true`, no `seq`); the answer."""
    now = timezone.now()
    document = {"test": True, "message": TEST_MESSAGE, "at": format_at(now)}
    if destination.is_webhook:
        return _post(destination, (to_json(document) + "\n").encode())
    frame = transports.syslog_message(
        at=format_at(now),
        hostname=socket.gethostname(),
        msgid="test",
        params={"test": "1"},
        msg=to_json(document),
    )
    return _syslog(destination, [frame])


def _post(destination: StreamDestination, body: bytes) -> str:
    return transports.webhook_post(
        destination.url,
        body,
        secret=destination.secret,
        headers=destination.headers,
        timeout=settings.AUDIT_STREAM_TIMEOUT_SECONDS,
        cafile=settings.AUDIT_STREAM_CA_BUNDLE,
    )


def _syslog(destination: StreamDestination, frames: list[bytes]) -> str:
    return transports.syslog_send(
        destination.host,
        destination.port or 0,
        frames,
        tls=destination.kind == StreamDestination.Kind.SYSLOG_TLS,
        timeout=settings.AUDIT_STREAM_TIMEOUT_SECONDS,
        cafile=settings.AUDIT_STREAM_CA_BUNDLE,
    )


class Sender:
    """One sender process: a thread per active destination."""

    def __init__(self, *, stop: threading.Event | None = None, poll: float = POLL_SECONDS):
        self.owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
        self.stop = stop or threading.Event()
        self.poll = poll
        self.threads: dict[int, threading.Thread] = {}

    def run_once(self) -> None:
        """Deliver every destination until it is caught up or fails once; then return."""
        threads = [
            threading.Thread(target=self._destination, args=(pk, True), daemon=True)
            for pk in StreamDestination.objects.active().values_list("pk", flat=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def run_forever(self) -> None:
        """Keep a thread per active destination (new ones start within a few polls)."""
        try:
            while not self.stop.is_set():
                self._start_threads()
                self.stop.wait(self.poll * 4)
            for thread in self.threads.values():
                thread.join()
        finally:
            connection.close()  # this thread's own; each destination thread closes its own

    def _start_threads(self) -> None:
        close_old_connections()
        try:
            active = list(StreamDestination.objects.active().values_list("pk", flat=True))
        except DatabaseError:  # the database restarts: try again, as the threads do
            logger.warning("Audit stream: cannot read the destinations", exc_info=True)
            return
        for pk in active:
            thread = self.threads.get(pk)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._destination, args=(pk, False))
                thread.daemon = True
                self.threads[pk] = thread
                thread.start()

    def _destination(self, pk: int, once: bool) -> None:
        failures = 0
        try:
            while not self.stop.is_set():
                if not StreamDestination.objects.active().filter(pk=pk).exists():
                    return
                outcome = deliver_batch(pk, self.owner)
                if outcome.error is not None:
                    if once:
                        return
                    failures += 1
                    backoff = min(2 ** (failures - 1), settings.AUDIT_STREAM_MAX_BACKOFF_SECONDS)
                    self.stop.wait(backoff)
                    continue
                failures = 0
                if outcome.busy:
                    if once:
                        return
                    self.stop.wait(self.poll * 4)
                elif outcome.caught_up:
                    if once:
                        return
                    self.stop.wait(self.poll)
        except Exception:
            logger.exception("Audit stream: the sender thread of destination %s stopped", pk)
            if not once:
                self.stop.wait(self.poll * 4)  # run_forever starts it again
        finally:
            release(pk, self.owner)
            connection.close()
