"""Append events to the hash-chained audit history, and check the chain.

Each event's hash is SHA-256(previous hash ‖ canonical JSON of the event), so editing,
deleting or reordering any row breaks every hash after it.
"""

import datetime
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from keys.models import AuditEvent, AuditHead

GENESIS_HASH = "0" * 64


def format_at(at: datetime.datetime) -> str:
    """The one textual form of an event's time: UTC, microseconds (hashed and exported)."""
    return at.astimezone(datetime.UTC).isoformat(timespec="microseconds")


def hashed_fields(event: AuditEvent) -> dict:
    """Every column of an event but the hashes: what its hash covers."""
    return {
        "seq": event.seq,
        "at": format_at(event.at),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "actor_ip": event.actor_ip,
        "key_id": event.key_id,
        "key_identifier": event.key_identifier,
        "owner_id": event.owner_id,
        "action": event.action,
        "details": event.details,
    }


def to_json(value) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(event: AuditEvent) -> str:
    """The hashed content of an event: every column but the hashes, in a fixed form."""
    return to_json(hashed_fields(event))


def hash_fields(prev_hash: str, fields: dict) -> str:
    """SHA-256(prev_hash ‖ canonical JSON of fields); offline checks call this directly."""
    return hashlib.sha256((prev_hash + to_json(fields)).encode()).hexdigest()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hash_fields(prev_hash, hashed_fields(event))


def record(
    action: str,
    *,
    key=None,
    actor=None,
    actor_label: str | None = None,
    ip: str | None = None,
    owner=None,
    details: dict | None = None,
    at=None,
) -> AuditEvent:
    """Append one event; call inside the transaction that makes the change it records."""
    with transaction.atomic():
        # The lock on the head row serialises appends (SELECT … FOR UPDATE on PostgreSQL; on
        # SQLite the IMMEDIATE transaction already holds the database's write lock).
        head = AuditHead.objects.select_for_update().get(pk=1)
        at = _not_before_predecessor(head, at or timezone.now())
        if actor_label is None:
            actor_label = actor.get_username() if actor is not None else "system"
        if owner is None and key is not None:
            owner = key.owner
        event = AuditEvent(
            seq=head.seq + 1,
            at=at,
            actor=actor,
            actor_label=actor_label,
            actor_ip=ip,
            key=key,
            key_identifier=key.identifier if key is not None else "",
            owner=owner,
            action=action,
            details=details or {},
            prev_hash=head.hash,
        )
        # Round-trip through JSON so the hashed form is exactly what the database returns.
        event.details = json.loads(json.dumps(event.details))
        event.hash = chain_hash(head.hash, event)
        event.save()
        head.seq, head.hash = event.seq, event.hash
        head.save(update_fields=["seq", "hash"])
        return event


def _not_before_predecessor(head: AuditHead, at: datetime.datetime) -> datetime.datetime:
    """Time never runs backwards along the chain (a clock step back, an explicit `at`).

    So a date range is one run of consecutive sequence numbers, which lets the history pages
    turn a date filter into a seq range through the `at` index (AuditEventQuerySet.between).
    """
    previous = AuditEvent.objects.filter(seq=head.seq).values_list("at", flat=True).first()
    return max(at, previous) if previous is not None else at


@dataclass
class Break:
    seq: int
    reason: str


def verify_chain(batch_size: int = 5000) -> Iterator[Break]:
    """Yield every place where the stored chain does not re-compute; nothing if it is intact.

    Walks the events up to the head read first, so appends made meanwhile are not mistaken
    for damage. Deleting trailing events *and* rewinding the head is only detectable against
    a head hash kept elsewhere: verify_audit prints it for that purpose.
    """
    head = AuditHead.objects.filter(pk=1).first()
    if head is None:
        yield Break(1, "the chain head row is missing")
        return
    expected_seq, prev_hash = 1, GENESIS_HASH
    last_seq = 0
    events = AuditEvent.objects.filter(seq__lte=head.seq).order_by("seq")
    rows = events.iterator(chunk_size=batch_size)
    try:
        for event in rows:
            if event.seq != expected_seq:
                yield Break(expected_seq, f"event {expected_seq} is missing (next is {event.seq})")
            if event.prev_hash != prev_hash:
                yield Break(event.seq, "does not chain onto the previous event")
            elif chain_hash(prev_hash, event) != event.hash:
                yield Break(event.seq, "its content does not match its hash")
            prev_hash = event.hash
            expected_seq = event.seq + 1
            last_seq = event.seq
    finally:
        rows.close()  # a caller that stops at the first break leaves no open cursor behind
    if head.seq != last_seq or head.hash != prev_hash:
        yield Break(last_seq + 1, f"the chain head says #{head.seq}; events up to it are missing")
    # A row past the head was never appended by record(). The newest event is read *before* the
    # head is read again: record() commits an event and the head together, so an append made
    # meanwhile is covered by the new head and only a row the head never took in stays past it.
    newest = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    if newest is not None and newest > head.seq:
        current = AuditHead.objects.get(pk=1).seq
        if newest > current:
            yield Break(newest, f"event {newest} lies beyond the chain head #{current}")


def count_and_head() -> tuple[int, str]:
    head = AuditHead.objects.get(pk=1)
    return head.seq, head.hash
