"""Bulk revocation for incidents (docs/design.md §12): many keys, one reason, one act.

An admin first sees which keys a filter matches (the dry run), then confirms. The set revoked
is exactly the set shown: the preview carries a snapshot of it, and the revocation refuses
when the keys matching now are not the ones shown (a key created, edited or revoked in
between). Each key is revoked by `revoke_key`, so each gets its own key_revoked event with
the reason; one bulk_revocation event records the act. All of it is one transaction: an
error anywhere revokes nothing.
"""

import hashlib

from django.core.exceptions import ValidationError
from django.db import transaction

from keys.actions.keys import revoke_key
from keys.audit import chain
from keys.models import ApiKey, AuditEvent

# One act revokes at most this many keys. Each costs a revoke_key (about 12 queries and its
# audit event: 8-18 ms, bench/bulk_revocation.py), all in one request and one transaction;
# this keeps that request well inside the server's time limit (GUNICORN_TIMEOUT, 30 s), past
# which the worker is killed and nothing is revoked. More keys: narrow the filters, several acts.
MAX_KEYS = 1000


class SetChanged(Exception):
    """The keys matching the filters are no longer the ones shown: nothing was revoked."""


def snapshot(keys) -> str:
    """A fingerprint of a set of keys (their identifiers), whatever their order."""
    digest = hashlib.sha256()
    for identifier in sorted(key.identifier for key in keys):
        digest.update(identifier.encode() + b"\n")
    return digest.hexdigest()


def revoke_keys(
    keys,
    *,
    shown: str,
    actor,
    reason: str,
    filters: dict,
    owner=None,
    ip: str | None = None,
) -> list[ApiKey]:
    """Revoke the keys of the queryset `keys` if they are still the set whose snapshot() is
    `shown`, else raise SetChanged. `filters` (each filter as text) goes into the one
    bulk_revocation event; `owner`, the owner they were filtered by, if any."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Give a reason: it is shown to every key's owner."]})
    if not filters:
        # Nothing narrows the set: it would be every key of the portal.
        raise ValueError("A bulk revocation needs at least one filter.")
    with transaction.atomic():
        # Locked (PostgreSQL; SQLite's IMMEDIATE transaction holds the write lock already),
        # so no key of the set can change between the comparison and its revocation.
        found = list(keys.select_for_update(of=("self",)).order_by("pk"))
        if not found or snapshot(found) != shown:
            raise SetChanged
        if len(found) > MAX_KEYS:
            raise ValidationError(f"At most {MAX_KEYS} keys are revoked in one act.")
        for key in found:
            revoke_key(key, actor=actor, reason=reason, ip=ip)
        chain.record(
            AuditEvent.Action.BULK_REVOCATION,
            actor=actor,
            owner=owner,
            ip=ip,
            details={"filters": filters, "keys_revoked": len(found), "reason": reason},
        )
    return found
