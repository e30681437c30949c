"""Append events to the hash-chained, signed audit history, and check the chain.

Each event's hash is SHA-256(previous hash ‖ canonical JSON of the event), so editing,
deleting or reordering any row breaks every hash after it. Anyone with database access could
re-compute those hashes, so each hash is also signed with an Ed25519 key the database does not
hold (keys.audit.signing): a re-hashed event no longer matches its signature. Removing the newest
events leaves a valid shorter chain; signed checkpoints of the head, written outside the
database (the log and AUDIT_CHECKPOINT_DIR), show that. A checkpoint is written every
AUDIT_CHECKPOINT_EVERY_EVENTS events, after a quiet spell, and at once after a security event
(AuditEvent.SECURITY_ACTIONS: revocations, role and password changes), so those are never
among the newest events a removal could take unseen.
"""

import datetime
import functools
import json
import logging
from collections import Counter
from collections.abc import Generator, Iterable, Mapping
from typing import cast

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from keys.audit import signing
from keys.audit.checkpoints import (
    Checkpoint,
    checkpoint_due,
    checkpoint_quietly,
    count_and_head,
    read_checkpoints,
    write_checkpoint,
)
from keys.audit.hashing import (
    GENESIS_HASH,
    Break,
    canonical_json,
    chain_hash,
    format_at,
    hash_fields,
    hashed_fields,
    to_json,
)
from keys.models import AuditEvent, AuditHead, ChainVerification

# The ledger's public face: callers use `chain.record(...)`, `chain.verify_chain()`, and the
# names re-exported from hashing and checkpoints.
__all__ = [
    "GENESIS_HASH",
    "Break",
    "Checkpoint",
    "Proofs",
    "append_batch",
    "canonical_json",
    "chain_hash",
    "changes",
    "check_chain",
    "count_and_head",
    "format_at",
    "hash_fields",
    "hashed_fields",
    "installation_proofs",
    "keep_verification",
    "last_verification",
    "read_checkpoints",
    "record",
    "record_many",
    "to_json",
    "verify_chain",
    "write_checkpoint",
]

logger = logging.getLogger("keys.audit")


def changes(before: Mapping, after: Mapping) -> dict:
    """{field: {"before": …, "after": …}} for each field of `after` whose value differs in
    `before`: what an edit event (of a key, a catalogue entry, a person) records."""
    return {
        field: {"before": before[field], "after": value}
        for field, value in after.items()
        if before[field] != value
    }


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
    entry = dict(key=key, actor=actor, actor_label=actor_label, ip=ip, owner=owner, at=at)
    return record_many([dict(entry, action=action, details=details)])[0]


def record_many(entries: list[dict]) -> list[AuditEvent]:
    """Append one event per entry (record()'s arguments, `action` included), in order, under
    one lock of the chain's head: what the usage flusher found in a second costs one lock."""
    if not entries:
        return []
    with transaction.atomic():
        # The lock on the head row serialises appends (SELECT … FOR UPDATE on PostgreSQL; on
        # SQLite the IMMEDIATE transaction already holds the database's write lock).
        head = AuditHead.objects.select_for_update().get(pk=1)
        seq, prev_hash, at = head.seq, head.hash, _predecessor_at(head)
        events = []
        for entry in entries:
            event = _event(**entry)
            # Time never runs backwards along the chain (see _predecessor_at).
            event.at = at = max(event.at, at) if at is not None else event.at
            seq += 1
            event.seq = seq
            _seal(event, prev_hash)
            event.save()
            prev_hash = event.hash
            events.append(event)
        urgent = any(event.action in AuditEvent.SECURITY_ACTIONS for event in events)
        _advance(head, events[-1], checkpoint_now=urgent)
        return events


def _event(
    action, *, key=None, actor=None, actor_label=None, ip=None, owner=None, details=None, at=None
) -> AuditEvent:
    if actor_label is None:
        actor_label = actor.get_username() if actor is not None else "system"
    if owner is None and key is not None:
        owner = key.owner
    return AuditEvent(
        at=at or timezone.now(),
        actor=actor,
        actor_label=actor_label,
        actor_ip=ip,
        key=key,
        key_identifier=key.identifier if key is not None else "",
        owner=owner,
        action=action,
        # Round-trip through JSON so the hashed form is exactly what the database returns.
        details=json.loads(json.dumps(details or {})),
    )


def append_batch(events: list[AuditEvent], batch_size: int = 500) -> AuditHead:
    """Chain, sign and insert prepared events after the head, as record() would (demo data).

    The events' times must not run backwards; their seq, prev_hash, hash and signature are set
    here.
    """
    with transaction.atomic():
        head = AuditHead.objects.select_for_update().get(pk=1)
        seq, prev_hash = head.seq, head.hash
        for event in events:
            seq += 1
            event.seq = seq
            _seal(event, prev_hash)
            prev_hash = event.hash
        AuditEvent.objects.all()._append_sealed(events, batch_size=batch_size)
        _advance(head, events[-1])
    return head


def _seal(event: AuditEvent, prev_hash: str) -> None:
    """Chain the event onto prev_hash and sign its hash (~20 µs)."""
    event.prev_hash = prev_hash
    event.hash = chain_hash(prev_hash, event)
    event.signature = signing.signer().sign(signing.EVENT, event.hash)


def _advance(head: AuditHead, newest: AuditEvent, *, checkpoint_now: bool = False) -> None:
    """Move the head onto the newest event; a checkpoint follows the commit when one is due,
    or whenever `checkpoint_now`."""
    before = head.seq
    head.seq, head.hash = newest.seq, newest.hash
    head.save(update_fields=["seq", "hash"])
    if checkpoint_now or checkpoint_due(before, head.seq):
        # After the commit only: a checkpoint of a rolled-back event would later look like
        # a truncated history.
        transaction.on_commit(functools.partial(checkpoint_quietly, head.seq, head.hash))


def _predecessor_at(head: AuditHead) -> datetime.datetime | None:
    """The time of the head event: no event after it may be earlier (a clock step back, an
    explicit `at`).

    So a date range is one run of consecutive sequence numbers, which lets the history pages
    turn a date filter into a seq range through the `at` index (AuditEventQuerySet.between).
    """
    return AuditEvent.objects.filter(seq=head.seq).values_list("at", flat=True).first()


class Proofs:
    """What a verification trusts besides the rows: public keys, and signed checkpoints.

    A signed event is checked against the public keys. An unsigned event (recorded before
    signing began) is accepted only below a valid checkpoint, whose hash then vouches for it
    and everything before it. A checkpoint newer than the newest event means events were
    removed from the end.
    """

    def __init__(self, public_keys: signing.PublicKeys, checkpoints: Iterable = ()):
        self.public_keys = public_keys
        self.problems: list[Break] = []
        self.checkpoints: dict[int, Checkpoint] = {}
        for checkpoint in checkpoints:
            if isinstance(checkpoint, Break):
                self.problems.append(checkpoint)
                continue
            reason = signing.verify(
                public_keys, signing.CHECKPOINT, checkpoint.payload(), checkpoint.signature
            )
            if reason:
                self.problems.append(
                    Break(checkpoint.seq, f"checkpoint {checkpoint.source}: {reason}")
                )
                continue
            other = self.checkpoints.setdefault(checkpoint.seq, checkpoint)
            if other.hash != checkpoint.hash:
                self.problems.append(
                    Break(
                        checkpoint.seq,
                        f"checkpoints {other.source} and {checkpoint.source} disagree on its hash",
                    )
                )
        self.sealed_up_to = max(self.checkpoints, default=0)
        self.signed_by: Counter[str] = Counter()  # events proven, per key id
        self.unsigned = 0  # events proven by a checkpoint alone
        self.newest: int | None = None  # the newest event verified (verify_chain)

    def summary(self) -> str:
        keys = ", ".join(f"key {kid} ({n})" for kid, n in sorted(self.signed_by.items()))
        parts = [f"signed by {keys}" if keys else "no signed events"]
        if self.unsigned:
            parts.append(f"{self.unsigned} unsigned, sealed by checkpoint #{self.sealed_up_to}")
        if self.checkpoints:
            parts.append(f"{len(self.checkpoints)} checkpoint(s), newest #{self.sealed_up_to}")
        else:
            parts.append("no checkpoints given: a removal of the newest events goes unseen")
        if uncovered := self.uncovered():
            parts.append(
                f"the newest {uncovered} event(s) are covered by no checkpoint yet: "
                "their removal would go unseen"
            )
        return "; ".join(parts)

    def uncovered(self) -> int:
        """How many of the newest events verified no checkpoint covers (0 if not known)."""
        if self.newest is None:
            return 0
        return max(0, self.newest - self.sealed_up_to)

    def check(self, seq: int, event_hash: str, signature: str) -> str | None:
        """Why an event whose hash re-computes is still not proven; None if it is."""
        if signature:
            reason = signing.verify(self.public_keys, signing.EVENT, event_hash, signature)
            if reason:
                return reason
            self.signed_by[signature.partition(":")[0]] += 1
        elif seq > self.sealed_up_to:
            return "it is not signed, and no signed checkpoint covers it (pass --checkpoints)"
        else:
            self.unsigned += 1
        checkpoint = self.checkpoints.get(seq)
        if checkpoint is not None and checkpoint.hash != event_hash:
            return f"its hash is not the one in checkpoint {checkpoint.source} of {checkpoint.at}"
        return None

    def missing_after(self, last_seq: int) -> Break | None:
        """A Break if a checkpoint names an event past the last one present."""
        if self.sealed_up_to <= last_seq:
            return None
        checkpoint = self.checkpoints[self.sealed_up_to]
        return Break(
            last_seq + 1,
            f"the newest events are missing: checkpoint {checkpoint.source} of {checkpoint.at} "
            f"names #{checkpoint.seq} ({checkpoint.hash})",
        )


def installation_proofs() -> Proofs:
    """This installation's public key, and the checkpoints in AUDIT_CHECKPOINT_DIR if set."""
    signer = signing.signer()
    directory = settings.AUDIT_CHECKPOINT_DIR
    return Proofs(
        {signer.key_id: signer.public_key}, read_checkpoints(directory) if directory else ()
    )


def verify_chain(
    proofs: Proofs | None = None, *, batch_size: int = 5000
) -> Generator[Break, None, None]:
    """Yield every place where the stored chain does not re-compute or is not proven.

    Checks signatures and checkpoints with `proofs` (default: installation_proofs()). Walks
    the events up to the head read after the checkpoints, so appends and checkpoints made
    meanwhile are not mistaken for damage.
    """
    if proofs is None:
        proofs = installation_proofs()
    yield from proofs.problems
    head = AuditHead.objects.filter(pk=1).first()
    if head is None:
        yield Break(1, "the chain head row is missing")
        return
    expected_seq, prev_hash = 1, GENESIS_HASH
    last_seq = 0
    events = AuditEvent.objects.filter(seq__lte=head.seq).order_by("seq")
    # QuerySet.iterator() returns a generator, which django-stubs types as a plain Iterator.
    rows = cast(Generator[AuditEvent, None, None], events.iterator(chunk_size=batch_size))
    try:
        for event in rows:
            if event.seq != expected_seq:
                yield Break(expected_seq, f"event {expected_seq} is missing (next is {event.seq})")
            if event.prev_hash != prev_hash:
                yield Break(event.seq, "does not chain onto the previous event")
            elif chain_hash(prev_hash, event) != event.hash:
                yield Break(event.seq, "its content does not match its hash")
            elif reason := proofs.check(event.seq, event.hash, event.signature):
                yield Break(event.seq, reason)
            prev_hash = event.hash
            expected_seq = event.seq + 1
            last_seq = event.seq
    finally:
        rows.close()  # a caller that stops at the first break leaves no open cursor behind
    proofs.newest = last_seq
    if head.seq != last_seq or head.hash != prev_hash:
        yield Break(last_seq + 1, f"the chain head says #{head.seq}; events up to it are missing")
    elif missing := proofs.missing_after(last_seq):
        yield missing
    # A row past the head was never appended by record(). The newest event is read *before* the
    # head is read again: record() commits an event and the head together, so an append made
    # meanwhile is covered by the new head and only a row the head never took in stays past it.
    newest = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    if newest is not None and newest > head.seq:
        current = AuditHead.objects.get(pk=1).seq
        if newest > current:
            yield Break(newest, f"event {newest} lies beyond the chain head #{current}")


def check_chain(proofs: Proofs | None = None, *, by: str) -> ChainVerification:
    """Verify the whole chain up to its first break and keep the result for the history page.

    The record is outside the chain (ChainVerification), so checking appends no event; it is
    signed like an event, so that a row written into the database by hand is not believed.
    """
    breaks = verify_chain(proofs)
    try:
        first = next(breaks, None)
    finally:
        breaks.close()
    head = AuditHead.objects.filter(pk=1).first()  # missing: a break verify_chain names
    checked = ChainVerification(
        by=by[:150],
        intact=first is None,
        events=head.seq if head else 0,
        broken_at=first.seq if first else None,
        reason=first.reason[:500] if first else "",
    )
    return keep_verification(checked)


def keep_verification(checked: ChainVerification) -> ChainVerification:
    """Sign the record of a check and store it (a failure to store is logged, not raised)."""
    checked.signature = signing.signer().sign(signing.VERIFICATION, _verification_payload(checked))
    try:
        with transaction.atomic():
            checked.save()
    except DatabaseError:  # e.g. a read-only database role: the check still counts
        logger.warning("The chain check's result could not be recorded", exc_info=True)
    return checked


def last_verification() -> tuple[ChainVerification | None, bool]:
    """The newest recorded chain check, and whether a check of this installation wrote it.

    A record dated in the future is passed over (it would otherwise stay the newest); one
    without a valid signature by the installation's audit key is returned as untrusted, so
    the page can say so instead of repeating what it claims.
    """
    row = ChainVerification.objects.filter(at__lte=timezone.now()).first()
    if row is None:
        return None, False
    signer = signing.signer()
    reason = signing.verify(
        {signer.key_id: signer.public_key},
        signing.VERIFICATION,
        _verification_payload(row),
        row.signature,
    )
    return row, reason is None


def _verification_payload(checked: ChainVerification) -> str:
    """What a check's signature covers: every field of its record."""
    return to_json(
        {
            "at": format_at(checked.at),
            "by": checked.by,
            "intact": checked.intact,
            "events": checked.events,
            "broken_at": checked.broken_at,
            "reason": checked.reason,
        }
    )
