"""SCIM's changes to users: one function each, the change and its history in one transaction.

The history names the actor "SCIM", and every event's details say via "scim":
- create: user_created (the fields set), roles_changed (staff: SCIM never grants more; admin
  and auditor come from the portal's admins or the single sign-on claim);
- update (PUT, PATCH): user_changed with each changed field before and after, and
  user_changed with `scim_external_id` when the provider's id for the person changes;
  re-activation is user_changed of is_active (the keys revoked at deactivation stay revoked);
- deactivation (active false, or DELETE): portal.people.deactivate_user, the one every path
  uses: the user's keys are revoked and their sessions end (owner_deactivated events).
"""

import uuid

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from keys.audit import chain
from keys.models import AuditEvent
from portal.models import ScimIdentity
from portal.people import deactivate_user
from portal.roles import STAFF
from portal.scim.protocol import ScimError, ScimUser, bad
from portal.user_events import acting

ACTOR = "SCIM"
VIA = "scim"
User = get_user_model()
# Model fields as SCIM names them, for errors the provider's log shows.
ATTRIBUTES = {
    "username": "userName",
    "first_name": "name.givenName",
    "last_name": "name.familyName",
    "email": "emails",
    "external_id": "externalId",
}


def identities_of(users: list) -> list[ScimIdentity]:
    """The users' SCIM identities, each made the first time SCIM shows that user (a name for
    them, not a change: no history event); two queries and one insert at most."""
    known = {i.user_id: i for i in ScimIdentity.objects.filter(user__in=users)}
    missing = [ScimIdentity(user=user) for user in users if user.pk not in known]
    # ignore_conflicts: a concurrent request may name the same user; read those back.
    ScimIdentity.objects.bulk_create(missing, ignore_conflicts=True)
    if missing:
        known = {i.user_id: i for i in ScimIdentity.objects.filter(user__in=users)}
    for user in users:
        known[user.pk].user = user
    return [known[user.pk] for user in users]


def as_scim(user, identity: ScimIdentity) -> ScimUser:
    return ScimUser(
        user_name=user.username,
        given_name=user.first_name,
        family_name=user.last_name,
        email=user.email,
        active=user.is_active,
        external_id=identity.external_id,
    )


def create_user(wanted: ScimUser, *, ip: str | None) -> ScimIdentity:
    """Create a staff user from SCIM, or bring back one a SCIM DELETE removed (new id)."""
    try:
        with transaction.atomic(), acting(None, ip, label=ACTOR, via=VIA):
            # Checked before any query: PostgreSQL refuses a NUL even in a lookup.
            _check(User(username=wanted.user_name), exclude=["password"])
            holder = User.objects.filter(username__iexact=wanted.user_name).first()
            if holder is not None:
                identity = ScimIdentity.objects.filter(user=holder).first()
                if identity is None or identity.deleted_at is None:
                    raise _taken(wanted.user_name)
                identity.scim_id, identity.deleted_at = uuid.uuid4(), None
                identity.save(update_fields=["scim_id", "deleted_at"])
                return _update(identity, wanted, ip=ip)
            user = User(
                username=wanted.user_name,
                first_name=wanted.given_name,
                last_name=wanted.family_name,
                email=wanted.email,
                is_active=wanted.active,
            )
            user.set_unusable_password()  # they sign in through single sign-on
            _check(user, exclude=["password"])
            identity = ScimIdentity(external_id=wanted.external_id)
            _check(identity, exclude=["user"])
            user.save()
            user.groups.add(Group.objects.get(name=STAFF))
            identity.user = user
            identity.save()
            return identity
    except IntegrityError:
        # Another request took the name between the check and the insert.
        raise _taken(wanted.user_name) from None


def update_user(identity: ScimIdentity, wanted: ScimUser, *, ip: str | None) -> ScimIdentity:
    """Make the user what `wanted` says (PUT, or PATCH applied); deactivation as everywhere."""
    try:
        with transaction.atomic(), acting(None, ip, label=ACTOR, via=VIA):
            return _update(identity, wanted, ip=ip)
    except IntegrityError:
        raise _taken(wanted.user_name) from None


def _update(identity: ScimIdentity, wanted: ScimUser, *, ip: str | None) -> ScimIdentity:
    user = User.objects.select_for_update().get(pk=identity.user_id)
    was_active = user.is_active
    user.username = wanted.user_name
    user.first_name, user.last_name = wanted.given_name, wanted.family_name
    user.email = wanted.email
    user.is_active = was_active or wanted.active
    _check(user, exclude=["password"])
    before = identity.external_id
    identity.external_id = wanted.external_id
    _check(identity, exclude=["user"])
    others = User.objects.exclude(pk=user.pk)
    if others.filter(username__iexact=wanted.user_name).exists():
        raise _taken(wanted.user_name)
    user.save()  # portal.user_events records the changed fields
    if before != identity.external_id:
        chain.record(
            AuditEvent.Action.USER_CHANGED,
            actor_label=ACTOR,
            ip=ip,
            owner=user,
            details={
                "user": user.get_username(),
                "scim_external_id": {"before": before, "after": identity.external_id},
                "via": VIA,
            },
        )
    identity.save()
    if was_active and not wanted.active:
        _deactivate(user, ip=ip, how="active false")
        user.refresh_from_db(fields=["is_active"])
    identity.user = user
    return identity


def delete_user(identity: ScimIdentity, *, ip: str | None) -> None:
    """A SCIM DELETE: deactivate the user (they are never deleted: their history stays) and
    hide them from SCIM, whose id then answers 404."""
    with transaction.atomic(), acting(None, ip, label=ACTOR, via=VIA):
        identity = ScimIdentity.objects.select_for_update().get(pk=identity.pk)
        _deactivate(identity.user, ip=ip, how="DELETE")
        identity.deleted_at = timezone.now()
        identity.save(update_fields=["deleted_at"])


def _deactivate(user, *, ip: str | None, how: str) -> None:
    deactivate_user(
        user,
        actor=None,
        actor_label=ACTOR,
        ip=ip,
        reason=f"Deactivated by the identity provider (SCIM {how}).",
        details={"via": VIA, "scim": how},
    )


def _check(instance, *, exclude: list[str]) -> None:
    """The model's own rules (lengths, characters, e-mail form) as a SCIM 400."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise bad(f"{ATTRIBUTES.get(field, field)}: {' '.join(messages)}") from None


def _taken(user_name: str) -> ScimError:
    return ScimError(409, f"userName {user_name!r} is already taken.", "uniqueness")
