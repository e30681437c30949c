"""Every change to a key goes through one of these functions.

Each changes the data and appends its audit event in one transaction: if the event cannot be
written, nothing changes. Rules are checked by the model (`ApiKey.validated`, `save()`);
these functions call them, so views, the admin and the shell obey the same rules.
"""

import datetime
import math

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from keys import tokens
from keys.actions import policy_mail
from keys.audit import chain
from keys.lib.networks import display_network
from keys.models import AllowedIp, ApiKey, AuditEvent, KeyGrant, KeyPolicy, KeyRequest

Action = AuditEvent.Action


def key_snapshot(key: ApiKey) -> dict:
    return {
        "name": key.name,
        "description": key.description,
        "expires_on": key.expires_on.isoformat(),
        "allowed_ips": sorted(
            display_network(n) for n in key.allowed_ips.values_list("network", flat=True)
        ),
        "apis": sorted(key.apis.values_list("slug", flat=True)),
        "read_only_apis": key.read_only_slugs(),
        "may_rotate_itself": key.may_rotate_itself,
    }


def _grant(key: ApiKey, apis, read_only: list[str]) -> None:
    """Grant exactly `apis`, those named in `read_only` read only and the rest read and write."""
    grants = KeyGrant.objects.filter(apikey=key)
    grants.exclude(api__in=apis).delete()
    held = set(grants.values_list("api_id", flat=True))
    # Each new grant is written with its access: one of a read-only API is never, even for a
    # moment, read and write (KeyGrantQuerySet refuses that).
    KeyGrant.objects.bulk_create(
        KeyGrant(apikey=key, api=api, access=_access(api, read_only))
        for api in apis
        if api.pk not in held
    )
    grants.filter(api__slug__in=read_only).update(access=KeyGrant.Access.READ)
    grants.exclude(api__slug__in=read_only).update(access=KeyGrant.Access.WRITE)


def _access(api, read_only: list[str]) -> str:
    return KeyGrant.Access.READ if api.slug in read_only else KeyGrant.Access.WRITE


@sensitive_variables("password")
def create_key(
    *,
    owner,
    name: str,
    expires_on: datetime.date,
    networks: list[str],
    apis,
    read_only=(),
    description: str = "",
    actor=None,
    ip: str | None = None,
    at: datetime.datetime | None = None,
    may_rotate_itself: bool = False,
    replaces: ApiKey | None = None,
    justification: str = "",
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext password, which is never stored.

    Allowed IPs outside the approved networks need a `justification`: the key is then
    created pending approval (refused until an administrator approves it)."""
    actor = actor or owner
    at = at or timezone.now()
    # A renewal keeps what an administrator approved for the key it renews.
    exempt = list(replaces.approved_exceptions) if replaces is not None else []
    fields = ApiKey.validated(
        owner=owner,
        name=name,
        description=description,
        expires_on=expires_on,
        networks=networks,
        apis=apis,
        read_only=read_only,
        created_at=at,
        justification=justification,
        exempt=exempt,
    )
    networks, apis = fields.pop("networks"), fields.pop("apis")
    read_only = fields.pop("read_only")
    outside, justification = fields.pop("needs_approval"), fields.pop("justification")
    key = ApiKey(
        owner=owner,
        created_at=at,
        may_rotate_itself=may_rotate_itself,
        replaces=replaces,
        awaiting_approval=bool(outside),
        approved_exceptions=[network for network in exempt if network in networks],
        **fields,
    )
    key.identifier = tokens.generate_identifier()
    password = tokens.generate_password(key.identifier)  # names its key (leak reports)
    key.password_hash = tokens.hash_password(password)
    try:
        with transaction.atomic():
            key.save()
            AllowedIp.objects.bulk_create(AllowedIp(key=key, network=n) for n in networks)
            _grant(key, apis, read_only)
            details = key_snapshot(key)
            if replaces is not None:
                details["replaces"] = replaces.identifier
            chain.record(Action.KEY_CREATED, key=key, actor=actor, ip=ip, details=details)
            request = None
            if outside:
                request = open_request(
                    key, networks=networks, outside=outside, justification=justification,
                    actor=actor, ip=ip,
                )  # fmt: skip
    except IntegrityError:
        # Lost a race with a concurrent create of the same name.
        if ApiKey.objects.name_taken(owner, key.name):
            raise ValidationError({"name": ["You already have a key with this name."]}) from None
        raise
    if request is not None:
        policy_mail.request_to_admins(request)
    return key, password


def open_request(
    key: ApiKey, *, networks, outside, justification: str, actor, ip: str | None
) -> KeyRequest:
    """Ask the administrators to approve allowed IPs outside the approved networks: for a key
    awaiting approval the key itself, else a change of its allowed IPs (the key keeps its
    current ones meanwhile). A request still open for the key is withdrawn: this one
    replaces it. Called inside the action's transaction."""
    withdraw_request(key)
    kind = KeyRequest.Kind.NEW if key.awaiting_approval else KeyRequest.Kind.CHANGE
    request = KeyRequest.objects.create(
        key=key,
        kind=kind,
        networks=list(networks),
        outside=list(outside),
        justification=justification,
        requested_by=actor,
    )
    chain.record(
        Action.APPROVAL_REQUESTED,
        key=key,
        actor=actor,
        ip=ip,
        details={
            "kind": kind.value,
            "allowed_ips": [display_network(n) for n in networks],
            "outside": [display_network(n) for n in outside],
            "justification": justification,
        },
    )
    return request


def withdraw_request(key: ApiKey) -> None:
    """Close the key's open request, if any: the owner saved another change meanwhile."""
    KeyRequest.objects.open().filter(key=key).update(
        decided_at=timezone.now(), decision=KeyRequest.Decision.WITHDRAWN
    )


def lock_policy() -> None:
    """Hold the policy's row until the transaction ends, taken before any key's: a policy
    change (which locks it, then marks keys) then waits for this change of a key, or this
    one for it, so neither marks a key by a policy the other is replacing."""
    KeyPolicy.objects.select_for_update().filter(pk=1).first()


def keep_policy_marks_of(owner) -> None:
    """Mark the owner's usable keys as the policy says of them now that their roles changed
    (APIs per role): a person has few keys."""
    for key in ApiKey.objects.usable().filter(owner=owner).select_related("owner"):
        keep_policy_mark(key)


def keep_policy_mark(key: ApiKey) -> None:
    """Mark the key out of policy, or not, as the policy in force says of it as stored now:
    the API reads the mark with the key (keys.api.key_read), never the policy."""
    out = bool(key.policy_violations(KeyPolicy.current()))
    if out != key.out_of_policy:
        ApiKey.objects.filter(pk=key.pk).update(out_of_policy=out, revision=key.revision + 1)
        key.out_of_policy = out
        key.revision += 1


def edit_key(
    key: ApiKey,
    *,
    actor,
    name: str,
    expires_on: datetime.date,
    networks: list[str],
    apis,
    read_only=None,
    description: str | None = None,
    ip: str | None = None,
    may_rotate_itself: bool | None = None,
    justification: str = "",
) -> ApiKey:
    """Change a key's name, allowed IPs, APIs (and which are read only), self-rotation or
    (shorten) its expiry.

    Allowed IPs outside the approved networks need a `justification` and an administrator:
    the key keeps its current allowed IPs and the new ones wait on the Requests page (a key
    still awaiting approval takes them at once: it is refused anyway)."""
    request = None
    with transaction.atomic():
        lock_policy()
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if read_only is None:  # not asked: every API the key keeps keeps its access
            read_only = key.read_only_slugs()
        fields = ApiKey.validated(
            owner=key.owner,
            name=name,
            description=key.description if description is None else description,
            expires_on=expires_on,
            networks=networks,
            apis=apis,
            read_only=read_only,
            key=key,
            justification=justification,
        )
        networks, apis = fields.pop("networks"), fields.pop("apis")
        read_only = fields.pop("read_only")
        outside, justification = fields.pop("needs_approval"), fields.pop("justification")
        proposed = networks
        if outside and not key.awaiting_approval:  # the old allowlist works until approved
            networks = list(key.allowed_ips.values_list("network", flat=True))
        was_awaiting = key.awaiting_approval
        if not outside and key.awaiting_approval:  # inside the approved networks now
            key.awaiting_approval = False
        before = key_snapshot(key)
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
        _grant(key, apis, read_only)
        changes = chain.changes(before, key_snapshot(key))
        if changes:
            chain.record(Action.KEY_EDITED, key=key, actor=actor, ip=ip, details=changes)
        if outside:
            request = open_request(
                key, networks=proposed, outside=outside, justification=justification,
                actor=actor, ip=ip,
            )  # fmt: skip
        elif was_awaiting or set(networks) != current:
            # Another allowlist, within the policy, replaces the one waiting; an edit of
            # something else (a name, an API) leaves the waiting change alone.
            withdraw_request(key)
        keep_policy_mark(key)
        if key.expires_on < old_expiry:
            chain.record(
                Action.EXPIRY_SHORTENED,
                key=key,
                actor=actor,
                ip=ip,
                details={"before": old_expiry.isoformat(), "after": key.expires_on.isoformat()},
            )
    if request is not None:
        policy_mail.request_to_admins(request)
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
        # A previous password still in its overlap dies with the key: nothing of it may be
        # left for end_password_overlaps to change on a row that is final once revoked.
        key.previous_password_hash, key.previous_password_valid_until = "", None
        key.revision += 1
        key.save()
        withdraw_request(key)  # nothing left to approve (a bulk revocation, a leak, its owner)
        chain.record(
            action,
            key=key,
            actor=actor,
            actor_label=actor_label,
            ip=ip,
            details={"reason": reason},
        )
    return key


# --- the lifecycle: regenerate, renew, self-rotation (docs/design.md §8) -----------------

REGENERATE_OVERLAPS = {
    "none": datetime.timedelta(0),
    "1 hour": datetime.timedelta(hours=1),
    "24 hours": datetime.timedelta(hours=24),
    "7 days": datetime.timedelta(days=7),
}
MAX_SELF_ROTATION_OVERLAP = datetime.timedelta(hours=24)
# A key rotates itself at most once this often: automation that loops, or two holders of the
# password taking it from each other, cannot churn through passwords (and the owner's mail).
SELF_ROTATION_EVERY = datetime.timedelta(minutes=1)
SELF_ROTATED_BY = "the key itself"
MAX_RENEWAL_OVERLAP = datetime.timedelta(days=30)


def end_of_validity(key: ApiKey) -> datetime.datetime:
    """The moment a key stops being valid: midnight after its expiration date, TIME_ZONE."""
    midnight = datetime.datetime.combine(
        key.expires_on + datetime.timedelta(days=1), datetime.time()
    )
    return timezone.make_aware(midnight)


class RotatedTooSoon(Exception):
    """The key rotated itself less than SELF_ROTATION_EVERY ago."""

    def __init__(self, retry_after: int):
        super().__init__(f"The key rotated itself within a minute; retry in {retry_after} s.")
        self.retry_after = retry_after


def _self_rotation_wait(key: ApiKey, now: datetime.datetime) -> int:
    """Seconds until the key may rotate itself again; 0 if it may now.

    Read from the history (the audit_key_action_seq index: a key has few regenerations), so
    every process and server sees the same last rotation."""
    last = (
        AuditEvent.objects.filter(
            key=key, action=Action.PASSWORD_REGENERATED, details__by=SELF_ROTATED_BY
        )
        .order_by("-seq")
        .values_list("at", flat=True)
        .first()
    )
    if last is None or not now - SELF_ROTATION_EVERY < last <= now:
        return 0  # (a last rotation in the future is a clock set back: not a reason to refuse)
    return max(1, math.ceil((last + SELF_ROTATION_EVERY - now).total_seconds()))


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
    for `overlap` and then never again. Returns the key and the new password.

    by_itself: the key asked (POST /api/v1/self/rotate), at most once a minute
    (RotatedTooSoon), and only if its owner allowed it (PermissionError)."""
    limit = MAX_SELF_ROTATION_OVERLAP if by_itself else max(REGENERATE_OVERLAPS.values())
    if not datetime.timedelta(0) <= overlap <= limit:
        raise ValidationError({"overlap": [f"The overlap can be at most {limit}."]})
    if by_itself and (wait := _self_rotation_wait(key, timezone.now())):
        raise RotatedTooSoon(wait)  # before paying for a hash; checked again under the lock
    password = tokens.generate_password(key.identifier)
    new_hash = tokens.hash_password(password)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
        if key.status() != ApiKey.Status.ACTIVE:
            raise ValidationError("Only an active key gets a new password.")
        if by_itself and not key.may_rotate_itself:
            raise PermissionError("This key may not rotate itself.")
        now = timezone.now()
        if by_itself and (wait := _self_rotation_wait(key, now)):
            raise RotatedTooSoon(wait)  # another process rotated it meanwhile
        if overlap:
            key.previous_password_hash = key.password_hash
            key.previous_password_valid_until = min(now + overlap, end_of_validity(key))
        else:
            key.previous_password_hash, key.previous_password_valid_until = "", None
        key.password_hash = new_hash
        key.revision += 1  # every cached verification of the old password is void
        key.save()
        until = key.previous_password_valid_until
        chain.record(
            Action.PASSWORD_REGENERATED,
            key=key,
            actor=None if by_itself else actor,
            actor_label=f"api:{key.identifier}" if by_itself else None,
            ip=ip,
            details={
                "overlap_seconds": int(overlap.total_seconds()),
                "previous_password_valid_until": until.isoformat() if until else None,
                "by": SELF_ROTATED_BY if by_itself else "owner",
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
            read_only=old.read_only_slugs(),
            actor=actor,
            ip=ip,
            may_rotate_itself=old.may_rotate_itself,
            replaces=old,
        )
        chain.record(
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
    # Revoked keys are final (and revoke_key drops the previous password; rows revoked before
    # it did keep a dead hash, which nothing reads).
    ended = ApiKey.objects.filter(revoked_at=None).exclude(previous_password_hash="")
    ended = ended.filter(previous_password_valid_until__lte=at)
    done = 0
    for pk in ended.values_list("pk", flat=True):
        with transaction.atomic():
            key = ApiKey.objects.select_for_update().get(pk=pk)
            until = key.previous_password_valid_until
            if key.revoked_at or not key.previous_password_hash or until is None or until > at:
                continue  # done by another process meanwhile, or revoked
            key.previous_password_hash, key.previous_password_valid_until = "", None
            key.save()
            chain.record(
                Action.PREVIOUS_PASSWORD_ENDED,
                key=key,
                details={"ended_at": until.isoformat()},
            )
            done += 1
    return done
