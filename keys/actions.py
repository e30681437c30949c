"""Every change to a key goes through one of these functions.

Each changes the data and appends its audit event in one transaction: if the event cannot be
written, nothing changes. Rules are checked by the model (`ApiKey.clean`, `access_errors`);
these functions call them, so views, the admin and the shell obey the same rules.
"""

import datetime

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from keys import audit, tokens
from keys.models import AllowedIp, Api, ApiKey, AuditEvent, display_network, normalise_network

Action = AuditEvent.Action


def _normalise_all(networks: list[str]) -> list[str]:
    errors, normalised = [], []
    for entry in networks:
        try:
            normalised.append(normalise_network(entry))
        except ValidationError as error:
            errors.extend(error.messages)
    if errors:
        raise ValidationError({"allowed_ips": errors})
    return normalised


def _snapshot(key: ApiKey) -> dict:
    return {
        "name": key.name,
        "expires_on": key.expires_on.isoformat(),
        "allowed_ips": sorted(
            display_network(n) for n in key.allowed_ips.values_list("network", flat=True)
        ),
        "apis": sorted(key.apis.values_list("slug", flat=True)),
    }


def _name_taken(owner, name: str, exclude_pk=None) -> bool:
    return ApiKey.objects.live().filter(owner=owner, name=name).exclude(pk=exclude_pk).exists()


@sensitive_variables("password")
def create_key(
    *,
    owner,
    name: str,
    expires_on: datetime.date,
    networks: list[str],
    apis,
    actor=None,
    ip: str | None = None,
    at: datetime.datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext password, which is never stored."""
    actor = actor or owner
    networks = _normalise_all(networks)
    apis = list(apis)
    key = ApiKey(owner=owner, name=name.strip(), expires_on=expires_on)
    key.created_at = at or timezone.now()
    errors = ApiKey.access_errors(networks, apis)
    try:
        key.clean()
    except ValidationError as error:
        errors.update(error.message_dict)
    if _name_taken(owner, key.name):
        errors["name"] = ["You already have a key with this name."]
    if errors:
        raise ValidationError(errors)

    key.identifier = tokens.generate_identifier()
    password = tokens.generate_password(key.identifier)
    key.password_hash = tokens.hash_password(password)
    try:
        with transaction.atomic():
            key.save()
            AllowedIp.objects.bulk_create(AllowedIp(key=key, network=n) for n in networks)
            key.apis.set(apis)
            audit.record(Action.KEY_CREATED, key=key, actor=actor, ip=ip, details=_snapshot(key))
    except IntegrityError:
        # Lost a race with a concurrent create of the same name.
        if _name_taken(owner, key.name):
            raise ValidationError({"name": ["You already have a key with this name."]}) from None
        raise
    return key, password


def edit_key(
    key: ApiKey,
    *,
    actor,
    name: str,
    expires_on: datetime.date,
    networks: list[str],
    apis,
    ip: str | None = None,
) -> ApiKey:
    """Change a key's name, allowed IPs, APIs or (shorten) its expiration date."""
    networks = _normalise_all(networks)
    apis = list(apis)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        before = _snapshot(key)
        old_expiry = key.expires_on
        key.name, key.expires_on = name.strip(), expires_on
        errors = ApiKey.access_errors(networks, apis)
        try:
            key.clean()
        except ValidationError as error:
            errors.update(error.message_dict)
        if _name_taken(key.owner, key.name, exclude_pk=key.pk):
            errors["name"] = ["You already have a key with this name."]
        if errors:
            raise ValidationError(errors)
        key.revision += 1
        key.save()
        current = set(key.allowed_ips.values_list("network", flat=True))
        key.allowed_ips.exclude(network__in=networks).delete()
        AllowedIp.objects.bulk_create(
            AllowedIp(key=key, network=n) for n in networks if n not in current
        )
        key.apis.set(apis)
        after = _snapshot(key)
        changes = {
            field: {"before": before[field], "after": after[field]}
            for field in before
            if before[field] != after[field]
        }
        if changes:
            audit.record(Action.KEY_EDITED, key=key, actor=actor, ip=ip, details=changes)
        if key.expires_on < old_expiry:
            audit.record(
                Action.EXPIRY_SHORTENED,
                key=key,
                actor=actor,
                ip=ip,
                details={"before": old_expiry.isoformat(), "after": key.expires_on.isoformat()},
            )
    return key


def revoke_key(
    key: ApiKey,
    *,
    actor,
    reason: str = "",
    ip: str | None = None,
    action: str = Action.KEY_REVOKED,
    actor_label: str | None = None,
) -> ApiKey:
    """Revoke a key now and for good, recording who, when and why.

    actor=None is the system acting on its own (a leak report), named by actor_label.
    """
    reason = (reason or "").strip()
    if actor is not None and actor.pk != key.owner_id and not reason:
        raise ValidationError({"reason": ["Give a reason for revoking someone else's key."]})
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.is_revoked:
            raise ValidationError("This key is already revoked.")
        key.revoked_at = timezone.now()
        key.revoked_by = actor
        key.revoke_reason = reason
        key.revision += 1
        key.save()
        audit.record(
            action,
            key=key,
            actor=actor,
            actor_label=actor_label,
            ip=ip,
            details={"reason": reason},
        )
    return key


def deactivate_user(user, *, actor, ip: str | None = None, reason: str = "") -> int:
    """Deactivate a user, revoke all their keys and end their sessions; return keys revoked."""
    reason = reason or f"Owner {user.get_username()} was deactivated."
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        user.is_active = False
        user.save(update_fields=["is_active"])
        keys = list(ApiKey.objects.live().filter(owner=user))
        for key in keys:
            revoke_key(key, actor=actor, reason=reason, ip=ip, action=Action.OWNER_DEACTIVATED)
        audit.record(
            Action.OWNER_DEACTIVATED,
            actor=actor,
            ip=ip,
            owner=user,
            details={"user": user.get_username(), "keys_revoked": len(keys)},
        )
    _end_sessions(user)
    return len(keys)


def _end_sessions(user) -> None:
    # Sessions store the user id in an encoded blob; decode each live one (fine at portal scale).
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()


# --- API catalogue ---------------------------------------------------------------------------

_API_FIELDS = ("slug", "name", "description", "position", "is_active")


def _api_snapshot(api: Api) -> dict:
    return {field: getattr(api, field) for field in _API_FIELDS}


def save_api(api: Api, *, actor, ip: str | None = None) -> Api:
    """Add or change a catalogue entry; a slug in use by keys never changes."""
    with transaction.atomic():
        if api.pk is None:
            before = None
        else:
            stored = Api.objects.select_for_update().get(pk=api.pk)
            before = _api_snapshot(stored)
            if stored.slug != api.slug and stored.keys.exists():
                raise ValidationError(
                    {"slug": ["Keys hold this API: its path segment cannot change."]}
                )
        api.full_clean()
        api.save()
        after = _api_snapshot(api)
        if before is None:
            details = {"api": api.slug, "change": "added", "after": after}
        else:
            changes = {
                field: {"before": before[field], "after": after[field]}
                for field in _API_FIELDS
                if before[field] != after[field]
            }
            if not changes:
                return api
            details = {"api": api.slug, "change": "changed", "changes": changes}
        audit.record(Action.CATALOGUE_CHANGED, actor=actor, ip=ip, details=details)
    return api


def delete_api(api: Api, *, actor, ip: str | None = None) -> None:
    """Remove a catalogue entry no key ever held; otherwise refuse (deactivate it instead)."""
    with transaction.atomic():
        api = Api.objects.select_for_update().get(pk=api.pk)
        if api.keys.exists():
            raise ValidationError(
                f"Keys hold the API “{api.name}”: deactivate it instead of deleting it."
            )
        details = {"api": api.slug, "change": "deleted", "before": _api_snapshot(api)}
        api.delete()
        audit.record(Action.CATALOGUE_CHANGED, actor=actor, ip=ip, details=details)


# --- expiry reminders ------------------------------------------------------------------------


def reminder_threshold(key: ApiKey, thresholds: list[int], today: datetime.date) -> int | None:
    """The tightest threshold (days before expiry) the key has reached, if any."""
    days_left = (key.expires_on - today).days
    reached = [days for days in thresholds if days_left <= days]
    return min(reached) if reached else None


def send_expiry_reminder(key: ApiKey, *, threshold: int, today: datetime.date) -> bool:
    """Mail the owner that `key` expires soon, once per threshold; False if already sent.

    The mail goes out before the transaction that records it, so a slow or hung mail server
    (bounded by EMAIL_TIMEOUT) holds no lock: not the key's row, not the audit head that
    every audited write waits for. The event is recorded once the server took the mail. If
    sending fails, the error propagates and nothing is recorded: the next run tries again.
    So a threshold is recorded at most once, and mailed at least once; twice only if the
    process dies between sending and recording, or two runs mail the same key at once.
    """
    key = ApiKey.objects.select_related("owner").get(pk=key.pk)
    if _reminded(key, threshold):
        return False
    days_left = (key.expires_on - today).days
    details = {
        "threshold_days": threshold,
        "days_left": days_left,
        "expires_on": key.expires_on.isoformat(),
        "to": key.owner.email,
    }
    send_mail(
        subject=f"Your API key “{key.name}” expires on {key.expires_on.isoformat()}",
        message=render_to_string("keys/expiry_reminder.txt", {"key": key, "days_left": days_left}),
        from_email=None,
        recipient_list=[key.owner.email],
    )
    with transaction.atomic():
        # Checked again under the key's lock: a run that recorded it meanwhile mailed too.
        key = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
        if not _reminded(key, threshold):
            audit.record(Action.EXPIRY_REMINDER, key=key, actor=None, details=details)
    return True


def _reminded(key: ApiKey, threshold: int) -> bool:
    """A reminder for this threshold or a tighter one was recorded (this one is pointless)."""
    sent = AuditEvent.objects.filter(key=key, action=Action.EXPIRY_REMINDER).values_list(
        "details", flat=True
    )
    return any(details.get("threshold_days", -1) <= threshold for details in sent)
