"""Privileged acts on people reach the audit history (docs/design.md §5), whatever path made them.

The Django admin, the Users page, `adduser`, the shell: each saves the User model or its
groups, so the receivers here see every such change and append it to the same hash chain as
key events, naming who acted (the signed-in person of the request, else "system") and who
was concerned, by stable id and by the name at the time.
"""

import contextvars
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver

from keys import actions
from keys.audit import chain
from keys.lib.client_ip import client_ip
from keys.models import AuditEvent

Action = AuditEvent.Action
User = get_user_model()
# The flags and names whose change is a privileged act; last_login is the log-in's own record.
WATCHED = ("username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser")

# Who is acting in this request or command: (user or None, client IP or None, label or None,
# the path the change came by or None).
_acting: contextvars.ContextVar[tuple] = contextvars.ContextVar(
    "acting", default=(None, None, None, None)
)
# Role changes gathered into one event per user (see one_roles_event), while set.
_roles_batch: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "roles_batch", default=None
)


@contextmanager
def acting(user, ip: str | None, *, label: str | None = None, via: str | None = None):
    """Attribute the user changes made inside this block to `user` from `ip`.

    A machine acting for no person (SCIM provisioning) passes user=None and its `label`, the
    history's actor; `via` names the path the change came by in each event's details.
    """
    token = _acting.set((user, ip, label, via))
    try:
        yield
    finally:
        _acting.reset(token)


@contextmanager
def one_roles_event():
    """Record the role changes made inside this block as one roles_changed event per user,
    with what was added and removed (a change of role is one act, not a removal and an add)."""
    batch: dict = {}
    token = _roles_batch.set(batch)
    try:
        yield
    finally:
        _roles_batch.reset(token)
    for user, added, removed in batch.values():
        if added != removed:
            details = {
                "user": user.get_username(),
                "added": sorted(added - removed),
                "removed": sorted(removed - added),
            }
            _record(Action.ROLES_CHANGED, user, details)


def _record(action: str, user, details: dict) -> None:
    actor, ip, label, via = _acting.get()
    actor = actor if actor is not None and actor.is_authenticated else None
    if via is not None:
        details = {**details, "via": via}
    with transaction.atomic():
        chain.record(action, actor=actor, actor_label=label, ip=ip, owner=user, details=details)


@receiver(pre_save, sender=User)
def _remember_before(sender, instance, raw=False, **kwargs):
    # Read what is stored now, to name each change before -> after once it is saved.
    if raw or instance.pk is None:
        instance._stored_before_save = None
        return
    instance._stored_before_save = (
        User.objects.filter(pk=instance.pk).values(*WATCHED, "password").first()
    )


@receiver(post_save, sender=User)
def _record_change(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    before = getattr(instance, "_stored_before_save", None)
    instance._stored_before_save = None
    if created or before is None:
        details = {field: getattr(instance, field) for field in WATCHED}
        _record(Action.USER_CREATED, instance, details)
        return
    changes = chain.changes(before, {field: getattr(instance, field) for field in WATCHED})
    if changes:
        _record(Action.USER_CHANGED, instance, {"user": instance.get_username(), **changes})
    if before["password"] != instance.password:
        actor = _acting.get()[0]
        by_self = actor is not None and actor.pk == instance.pk
        _record(
            Action.PASSWORD_SET,
            instance,
            {"user": instance.get_username(), "by": "self" if by_self else "someone else"},
        )


@receiver(m2m_changed, sender=User.groups.through)
def _record_roles(sender, instance, action, reverse, pk_set, **kwargs):
    if reverse or action not in {"pre_clear", "post_add", "post_remove", "post_clear"}:
        return
    if action == "pre_clear":
        instance._groups_before_clear = list(instance.groups.values_list("name", flat=True))
        return
    if action == "post_clear":
        removed = getattr(instance, "_groups_before_clear", [])
        added = []
    else:
        names = sorted(
            instance.groups.model.objects.filter(pk__in=pk_set or ()).values_list("name", flat=True)
        )
        added, removed = (names, []) if action == "post_add" else ([], names)
    if (batch := _roles_batch.get()) is not None:
        _user, was_added, was_removed = batch.setdefault(instance.pk, (instance, set(), set()))
        was_added.update(added)
        was_removed.update(removed)
        return
    if added or removed:
        details = {"user": instance.get_username(), "added": added, "removed": removed}
        _record(Action.ROLES_CHANGED, instance, details)
        # Which APIs a key may hold depends on its owner's roles (the key policy, §12).
        actions.keep_policy_marks_of(instance)


def record_log_in(
    request, user, *, wrong_passwords_since_last: int = 0, second_factor: str | None = None
) -> None:
    """A successful log-in on any path (portal.backends.ThrottledModelBackend), on the record,
    with the wrong passwords tried on the account since its last log-in, if any, and the
    kind of second factor that completed it (portal/mfa.py), if one did."""
    details: dict = {"user": user.get_username()}
    if wrong_passwords_since_last:
        details["wrong_passwords_since_last_log_in"] = wrong_passwords_since_last
    if second_factor:
        details["second_factor"] = second_factor
    with acting(user, _ip(request)):
        _record(Action.LOGIN_SUCCEEDED, user, details)


def record_sso_log_in(request, user, details: dict) -> None:
    """A single sign-on log-in (portal.sso): login_succeeded with method "sso" and `details`."""
    with acting(user, _ip(request)):
        _record(
            Action.LOGIN_SUCCEEDED, user, {"user": user.get_username(), "method": "sso", **details}
        )


def record_sso_refused(request, user, *, reason: str) -> None:
    """A single sign-on log-in refused for an account the provider vouched for (deactivated)."""
    details = {"user": user.get_username(), "method": "sso", "reason": reason}
    with acting(None, _ip(request)):
        _record(Action.LOGIN_FAILED, user, details)


def record_log_in_failed(request, user, *, failures: int, confirming: bool = False) -> None:
    """A failed log-in for `user`, the account named if it exists (else None), on the record;
    `confirming` if the wrong password or code was typed to confirm who one is.

    An unknown name is not recorded: what was typed as a user name may be a password typed
    into the wrong field, and the history keeps it forever.
    """
    details = {"user": user.get_username() if user else None, "failures_in_window": failures}
    if confirming:
        details["while"] = "confirming identity"
    with acting(None, _ip(request)):
        _record(Action.LOGIN_FAILED, user, details)


# How a person may confirm who they are (portal/confirm.py); never a recovery code.
CONFIRMATION_METHODS = ("password", "totp", "passkey", "sso")


def record_identity_confirmed(request, user, *, method: str) -> None:
    """A confirmation of who one is before a protected act (keys/lib/reauth.py), on the record."""
    if method not in CONFIRMATION_METHODS:
        raise ValueError(f"Unknown confirmation method: {method}")
    with acting(user, _ip(request)):
        _record(Action.IDENTITY_CONFIRMED, user, {"user": user.get_username(), "method": method})


# What a log-in lock holds back (portal.backends): this account from this client network;
# this account from a browser that logged in to it before; this account from every network
# without such a browser, each allowed fewer failures once the account passed its budget;
# every account from this client network.
LOCK_SCOPES = ("network", "browser", "account budget", "network, every user name")


def record_log_in_locked(request, user, *, scope: str, failures: int) -> None:
    """A log-in lock (portal.backends), on the record; `user` as for record_log_in_failed."""
    if scope not in LOCK_SCOPES:
        raise ValueError(f"Unknown log-in lock scope: {scope}")
    if scope == "network, every user name":
        user = None  # it holds back every name from there, not the one that tipped it
    details = {
        "user": user.get_username() if user else None,
        "locked": scope,
        "failures_in_window": failures,
    }
    with acting(None, _ip(request)):
        _record(Action.LOGIN_LOCKED, user, details)


# The second factor (portal/mfa.py): the kind of factor is named ("authenticator app",
# "passkey", "recovery codes"), never a secret or a code.


def record_factor_added(request, user, *, factor: str, name: str | None = None) -> None:
    """A person added a second factor (a passkey under `name`, their own label for it)."""
    details = {"user": user.get_username(), "factor": factor}
    if name:
        details["name"] = name
    with acting(user, _ip(request)):
        _record(Action.FACTOR_ADDED, user, details)


def record_factor_removed(
    request, user, *, factor: str, name: str | None = None, by=None, ip: str | None = None
) -> None:
    """A second factor removed from `user`: by the person on Sign-in security, or `by` an
    admin in the Django admin."""
    details = {"user": user.get_username(), "factor": factor}
    if name:
        details["name"] = name
    with acting(by or user, ip or _ip(request)):
        _record(Action.FACTOR_REMOVED, user, details)


def record_recovery_codes_made(request, user, *, again: bool) -> None:
    """Recovery codes made for `user`: with a first factor, or anew (the old ones end)."""
    details = {"user": user.get_username(), "made": "again" if again else "first"}
    with acting(user, _ip(request)):
        _record(Action.RECOVERY_CODES_MADE, user, details)


def record_recovery_code_used(request, user, *, codes_left: int) -> None:
    """A recovery code let `user` in (or confirmed it was them); it is used up."""
    details = {"user": user.get_username(), "codes_left": codes_left}
    with acting(user, _ip(request)):
        _record(Action.RECOVERY_CODE_USED, user, details)


def record_second_factor_failed(request, user, *, reauthentication: bool, failures: int) -> None:
    """A wrong TOTP or recovery code for `user`, at log-in or when confirming it's them."""
    details = {
        "user": user.get_username(),
        "step": "confirming it's you" if reauthentication else "log-in",
        "failures_in_window": failures,
    }
    with acting(None, _ip(request)):
        _record(Action.SECOND_FACTOR_FAILED, user, details)


def _ip(request) -> str | None:
    return client_ip(request) if request is not None else None
