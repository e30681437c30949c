"""Changes to audit stream destinations, each with its audit event in the same transaction.

The history records what a destination is (name, kind, where, headers' names, batch size,
active) before and after, never a secret: a webhook secret appears only as "set"/"replaced"
and custom header values (a Splunk token, say) not at all.
"""

from django.core.exceptions import ValidationError
from django.db import transaction

from keys.audit import chain
from keys.models import AuditEvent, AuditHead, StreamDestination

Action = AuditEvent.Action


def destination_snapshot(destination: StreamDestination) -> dict:
    """What the history shows of a destination: everything but its secrets."""
    snapshot: dict = {
        "name": destination.name,
        "kind": destination.kind,
        "batch_size": destination.batch_size,
        "active": destination.is_active,
    }
    if destination.is_webhook:
        snapshot["url"] = destination.target  # query values hidden: a token may be one
        snapshot["header_names"] = sorted(destination.headers)
    else:
        snapshot["host"] = destination.host
        snapshot["port"] = destination.port
    return snapshot


def add_destination(destination: StreamDestination, *, actor, ip: str | None = None):
    """Save a new destination; it starts at the beginning of the history (seq 1)."""
    with transaction.atomic():
        destination.full_clean()
        destination.save()
        chain.record(
            Action.DESTINATION_ADDED,
            actor=actor,
            ip=ip,
            details={
                "destination": destination.identifier,
                "after": destination_snapshot(destination),
                "secret": "set" if destination.secret else "none",
            },
        )
    return destination


def change_destination(
    destination: StreamDestination, *, actor, ip: str | None = None
) -> StreamDestination:
    """Save a changed configuration; its delivery position is left as it is."""
    with transaction.atomic():
        stored = StreamDestination.objects.select_for_update().get(pk=destination.pk)
        destination.full_clean()
        fields = ["name", "kind", "url", "host", "port", "secret", "headers", "batch_size"]
        destination.save(update_fields=[*fields, "is_active"])
        before, after = destination_snapshot(stored), destination_snapshot(destination)
        changes = chain.changes(dict.fromkeys(after) | before, after)
        secret_replaced = stored.secret != destination.secret
        header_values_changed = stored.headers != destination.headers
        if not changes and not secret_replaced and not header_values_changed:
            return destination
        details: dict = {"destination": destination.identifier, "changes": changes}
        if secret_replaced:
            details["secret"] = "replaced"  # noqa: S105 (a word, not the secret)
        if header_values_changed and "header_names" not in changes:
            details["header_values"] = "changed"
        chain.record(Action.DESTINATION_CHANGED, actor=actor, ip=ip, details=details)
    return destination


def remove_destination(destination: StreamDestination, *, actor, ip: str | None = None) -> None:
    with transaction.atomic():
        stored = StreamDestination.objects.select_for_update().get(pk=destination.pk)
        details = {
            "destination": stored.identifier,
            "before": destination_snapshot(stored),
            "last_acked_seq": stored.last_acked_seq,
        }
        stored.delete()
        chain.record(Action.DESTINATION_REMOVED, actor=actor, ip=ip, details=details)


def replay_destination(
    destination: StreamDestination, *, from_seq: int, actor, ip: str | None = None
) -> StreamDestination:
    """Send again every event from `from_seq` on: the position moves back to from_seq - 1.

    Only back (or to where it stands): moving it forward would skip events the receiver never
    acknowledged.
    """
    with transaction.atomic():
        stored = StreamDestination.objects.select_for_update().get(pk=destination.pk)
        if not 1 <= from_seq <= stored.last_acked_seq + 1:
            raise ValidationError(
                {
                    "from_seq": f"Give a sequence number from 1 to {stored.last_acked_seq + 1} "
                    "(a replay sends events again; it cannot skip ones not yet acknowledged)."
                }
            )
        before = stored.last_acked_seq
        StreamDestination.objects.filter(pk=stored.pk).update(last_acked_seq=from_seq - 1)
        chain.record(
            Action.DESTINATION_REPLAYED,
            actor=actor,
            ip=ip,
            details={
                "destination": stored.identifier,
                "name": stored.name,
                "from_seq": from_seq,
                "last_acked_seq": {"before": before, "after": from_seq - 1},
                "head_seq": AuditHead.objects.values_list("seq", flat=True).get(pk=1),
            },
        )
        stored.refresh_from_db()
    return stored
