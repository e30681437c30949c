"""Every change to a key goes through one of these functions.

Each changes the data and appends its audit event in one transaction: if the event cannot be
written, nothing changes. Rules are checked by the model (`ApiKey.validated`, `save()`);
these functions call them, so views, the admin and the shell obey the same rules.
"""

import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from keys import audit, tokens
from keys.models import AllowedIp, Api, ApiKey, AuditEvent, display_network

Action = AuditEvent.Action


def _snapshot(key: ApiKey) -> dict:
    return {
        "name": key.name,
        "description": key.description,
        "expires_on": key.expires_on.isoformat(),
        "allowed_ips": sorted(
            display_network(n) for n in key.allowed_ips.values_list("network", flat=True)
        ),
        "apis": sorted(key.apis.values_list("slug", flat=True)),
        "may_rotate_itself": key.may_rotate_itself,
    }


@sensitive_variables("password")
def create_key(
    *,
    owner,
    name: str,
    expires_on: datetime.date,
    networks: list[str],
    apis,
    description: str = "",
    actor=None,
    ip: str | None = None,
    at: datetime.datetime | None = None,
    may_rotate_itself: bool = False,
    replaces: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext password, which is never stored."""
    actor = actor or owner
    at = at or timezone.now()
    fields = ApiKey.validated(
        owner=owner,
        name=name,
        description=description,
        expires_on=expires_on,
        networks=networks,
        apis=apis,
        created_at=at,
    )
    networks, apis = fields.pop("networks"), fields.pop("apis")
    key = ApiKey(
        owner=owner,
        created_at=at,
        may_rotate_itself=may_rotate_itself,
        replaces=replaces,
        **fields,
    )
    key.identifier = tokens.generate_identifier()
    password = tokens.generate_password(key.identifier)  # names its key (leak reports)
    key.password_hash = tokens.hash_password(password)
    try:
        with transaction.atomic():
            key.save()
            AllowedIp.objects.bulk_create(AllowedIp(key=key, network=n) for n in networks)
            key.apis.set(apis)
            details = _snapshot(key)
            if replaces is not None:
                details["replaces"] = replaces.identifier
            audit.record(Action.KEY_CREATED, key=key, actor=actor, ip=ip, details=details)
    except IntegrityError:
        # Lost a race with a concurrent create of the same name.
        if ApiKey.objects.name_taken(owner, key.name):
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
    description: str | None = None,
    ip: str | None = None,
    may_rotate_itself: bool | None = None,
) -> ApiKey:
    """Change a key's name, allowed IPs, APIs, self-rotation or (shorten) its expiry."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        fields = ApiKey.validated(
            owner=key.owner,
            name=name,
            description=key.description if description is None else description,
            expires_on=expires_on,
            networks=networks,
            apis=apis,
            key=key,
        )
        networks, apis = fields.pop("networks"), fields.pop("apis")
        before = _snapshot(key)
        old_expiry = key.expires_on
        key.name, key.expires_on = fields["name"], fields["expires_on"]
        key.description = fields["description"]  # None above: kept as it is
        if may_rotate_itself is not None:
            key.may_rotate_itself = may_rotate_itself
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
    at: datetime.datetime | None = None,
    actor_label: str | None = None,
) -> ApiKey:
    """Revoke a key now (or at `at`, past) and for good, recording who, when and why.

    actor=None is the system acting on its own (a leak report, a renewal), named by
    actor_label.
    """
    reason = (reason or "").strip()
    if key.revocation_needs_reason(actor) and not reason:
        raise ValidationError({"reason": ["Give a reason for revoking someone else's key."]})
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise ValidationError("This key is already revoked.")
        key.revoked_at = at or timezone.now()
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


# --- the lifecycle: regenerate, renew, self-rotation (DESIGN §8) ---------------------------

REGENERATE_OVERLAPS = {
    "none": datetime.timedelta(0),
    "1 hour": datetime.timedelta(hours=1),
    "24 hours": datetime.timedelta(hours=24),
    "7 days": datetime.timedelta(days=7),
}
MAX_SELF_ROTATION_OVERLAP = datetime.timedelta(hours=24)
MAX_RENEWAL_OVERLAP = datetime.timedelta(days=30)


def end_of_validity(key: ApiKey) -> datetime.datetime:
    """The moment a key stops being valid: midnight after its expiration date, TIME_ZONE."""
    midnight = datetime.datetime.combine(
        key.expires_on + datetime.timedelta(days=1), datetime.time()
    )
    return timezone.make_aware(midnight)


@sensitive_variables("password")
def regenerate_password(
    key: ApiKey,
    *,
    actor,
    overlap: datetime.timedelta,
    ip: str | None = None,
    by_itself: bool = False,
) -> tuple[ApiKey, str]:
    """Give the key a new password (same identifier and settings); the old one keeps working
    for `overlap` and then never again. Returns the key and the new password."""
    limit = MAX_SELF_ROTATION_OVERLAP if by_itself else max(REGENERATE_OVERLAPS.values())
    if not datetime.timedelta(0) <= overlap <= limit:
        raise ValidationError({"overlap": [f"The overlap can be at most {limit}."]})
    password = tokens.generate_password(key.identifier)
    new_hash = tokens.hash_password(password)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
        if key.status() != ApiKey.Status.ACTIVE:
            raise ValidationError("Only an active key gets a new password.")
        if by_itself and not key.may_rotate_itself:
            raise PermissionError("This key may not rotate itself.")
        now = timezone.now()
        if overlap:
            key.previous_password_hash = key.password_hash
            key.previous_password_valid_until = min(now + overlap, end_of_validity(key))
        else:
            key.previous_password_hash, key.previous_password_valid_until = "", None
        key.password_hash = new_hash
        key.revision += 1  # every cached verification of the old password is void
        key.save()
        until = key.previous_password_valid_until
        audit.record(
            Action.PASSWORD_REGENERATED,
            key=key,
            actor=None if by_itself else actor,
            actor_label=f"api:{key.identifier}" if by_itself else None,
            ip=ip,
            details={
                "overlap_seconds": int(overlap.total_seconds()),
                "previous_password_valid_until": until.isoformat() if until else None,
                "by": "the key itself" if by_itself else "owner",
            },
        )
    return key, password


@sensitive_variables("password")
def renew_key(
    key: ApiKey,
    *,
    actor,
    expires_on: datetime.date,
    overlap: datetime.timedelta,
    ip: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key with the old one's name, IPs and APIs; the old one is revoked when the
    overlap ends (at most 30 days, never past its own expiry). Returns the new key and
    its password."""
    if not datetime.timedelta(0) <= overlap <= MAX_RENEWAL_OVERLAP:
        raise ValidationError({"overlap": ["The overlap can be at most 30 days."]})
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
        if old.is_revoked or old.revoke_at is not None or hasattr(old, "replaced_by"):
            raise ValidationError("This key is revoked or already renewed.")
        # The old key passes its name on before the new one takes it (ApiKey.name_taken).
        old.revoke_at = min(timezone.now() + overlap, end_of_validity(old))
        old.revision += 1
        old.save()
        new, password = create_key(
            owner=old.owner,
            name=old.name,
            expires_on=expires_on,
            networks=[str(entry) for entry in old.allowed_ips.all()],
            apis=list(old.apis.all()),
            actor=actor,
            ip=ip,
            may_rotate_itself=old.may_rotate_itself,
            replaces=old,
        )
        audit.record(
            Action.KEY_RENEWED,
            key=old,
            actor=actor,
            ip=ip,
            details={"replaced_by": new.identifier, "revoke_at": old.revoke_at.isoformat()},
        )
        if old.revoke_at <= timezone.now():  # no overlap
            revoke_key(old, actor=None, reason=f"replaced by {new.identifier}", ip=ip)
    return new, password


def revoke_replaced_keys(at: datetime.datetime | None = None) -> int:
    """Write the revocation of every replaced key whose overlap has ended.

    The API refuses such a key already (it reads revoke_at on every call); this only makes
    the record say so: revoked at the end of the overlap, reason "replaced by <id>".
    """
    done = 0
    for key in ApiKey.objects.overlap_over(at).select_related("replaced_by"):
        successor = getattr(key, "replaced_by", None)
        reason = f"replaced by {successor.identifier}" if successor else "end of overlap"
        try:
            revoke_key(key, actor=None, reason=reason, at=key.revoke_at)
        except ValidationError:
            continue  # revoked meanwhile
        done += 1
    return done


def end_password_overlaps(at: datetime.datetime | None = None) -> int:
    """Forget the previous passwords whose overlap has ended, each an audit event.

    The API refuses such a password already (it compares the end with the time of each
    call); this drops the old hash from the database and puts the end on the record.
    """
    at = at or timezone.now()
    ended = ApiKey.objects.exclude(previous_password_hash="").filter(
        previous_password_valid_until__lte=at
    )
    done = 0
    for pk in ended.values_list("pk", flat=True):
        with transaction.atomic():
            key = ApiKey.objects.select_for_update().get(pk=pk)
            until = key.previous_password_valid_until
            if not key.previous_password_hash or until is None or until > at:
                continue  # done by another process meanwhile
            key.previous_password_hash, key.previous_password_valid_until = "", None
            key.save()
            audit.record(
                Action.PREVIOUS_PASSWORD_ENDED,
                key=key,
                details={"ended_at": until.isoformat()},
            )
            done += 1
    return done


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
        if before is not None and before["is_active"] and not api.is_active:
            _withdraw(api, actor=actor, ip=ip)
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


def _withdraw(api: Api, *, actor, ip: str | None) -> None:
    """A deactivated API leaves every live key that holds it, each an audited edit."""
    for key in ApiKey.objects.live().filter(apis=api).select_for_update().order_by("pk"):
        before = _snapshot(key)
        key.apis.remove(api)
        key.revision += 1  # the next call of any process reads the new grants
        key.save()
        audit.record(
            Action.KEY_EDITED,
            key=key,
            actor=actor,
            ip=ip,
            details={
                "apis": {"before": before["apis"], "after": _snapshot(key)["apis"]},
                "reason": f"API “{api.name}” was deactivated in the catalogue.",
            },
        )


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


def portal_url(view: str, key: ApiKey) -> str:
    """The absolute address of a key's page, for mails (PORTAL_URL, e.g. https://keys.example)."""
    return settings.PORTAL_URL.rstrip("/") + reverse(view, args=[key.identifier])


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
        message=render_to_string(
            "keys/expiry_reminder.txt",
            {"key": key, "days_left": days_left, "renew_url": portal_url("keys:renew", key)},
        ),
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
