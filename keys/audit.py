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


def canonical_json(event: AuditEvent) -> str:
    """The hashed content of an event: every column but the hashes, in a fixed form."""
    return json.dumps(
        {
            "seq": event.seq,
            "at": event.at.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
            "actor_id": event.actor_id,
            "actor_label": event.actor_label,
            "actor_ip": event.actor_ip,
            "key_id": event.key_id,
            "key_identifier": event.key_identifier,
            "owner_id": event.owner_id,
            "action": event.action,
            "details": event.details,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical_json(event)).encode()).hexdigest()


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
        head = AuditHead.objects.select_for_update().get(pk=1)
        if actor_label is None:
            actor_label = actor.get_username() if actor is not None else "system"
        if owner is None and key is not None:
            owner = key.owner
        event = AuditEvent(
            seq=head.seq + 1,
            at=at or timezone.now(),
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


@dataclass
class Break:
    seq: int
    reason: str


def verify_chain(batch_size: int = 5000) -> Iterator[Break]:
    """Yield every place where the stored chain does not re-compute; nothing if it is intact."""
    expected_seq, prev_hash = 1, GENESIS_HASH
    last_seq = 0
    events = AuditEvent.objects.order_by("seq").iterator(chunk_size=batch_size)
    for event in events:
        if event.seq != expected_seq:
            yield Break(expected_seq, f"event {expected_seq} is missing (next is {event.seq})")
        if event.prev_hash != prev_hash:
            yield Break(event.seq, "does not chain onto the previous event")
        elif chain_hash(prev_hash, event) != event.hash:
            yield Break(event.seq, "its content does not match its hash")
        prev_hash = event.hash
        expected_seq = event.seq + 1
        last_seq = event.seq
    head = AuditHead.objects.get(pk=1)
    if head.seq != last_seq or head.hash != prev_hash:
        yield Break(last_seq + 1, f"the chain head says {head.seq}; events beyond were deleted")
