"""Acts on people that reach their keys: deactivating a user revokes every key they own."""

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from keys.actions import revoke_key
from keys.audit import chain
from keys.models import ApiKey, AuditEvent
from portal.user_events import acting

Action = AuditEvent.Action


def deactivate_user(
    user,
    *,
    actor,
    ip: str | None = None,
    reason: str = "",
    actor_label: str | None = None,
    details: dict | None = None,
) -> int:
    """Deactivate a user, revoke all their keys and end their sessions; return keys revoked.

    A machine acting for no person (SCIM) passes actor=None, its `actor_label`, and `details`
    to add to the deactivation's event (how it came).
    """
    reason = reason or f"Owner {user.get_username()} was deactivated."
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        user.is_active = False
        user.save(update_fields=["is_active"])
        keys = list(ApiKey.objects.live().filter(owner=user))
        for key in keys:
            revoke_key(
                key,
                actor=actor,
                reason=reason,
                ip=ip,
                action=Action.OWNER_DEACTIVATED,
                actor_label=actor_label,
            )
        chain.record(
            Action.OWNER_DEACTIVATED,
            actor=actor,
            actor_label=actor_label,
            ip=ip,
            owner=user,
            details={"user": user.get_username(), "keys_revoked": len(keys), **(details or {})},
        )
    _end_sessions(user)
    return len(keys)


def change_email(user, email: str, *, actor, ip: str | None = None) -> None:
    """Set a user's e-mail address; portal.user_events records it as user_changed."""
    with transaction.atomic(), acting(actor, ip):
        user.email = email
        user.save(update_fields=["email"])


def _end_sessions(user) -> None:
    # Sessions store the user id in an encoded blob; decode each live one (fine at portal scale).
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()


# --- API catalogue ---------------------------------------------------------------------------
