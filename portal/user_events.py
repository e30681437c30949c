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
    if added or removed:
        details = {"user": instance.get_username(), "added": added, "removed": removed}
        _record(Action.ROLES_CHANGED, instance, details)
        # Which APIs a key may hold depends on its owner's roles (the key policy, §12).
        actions.keep_policy_marks_of(instance)


def record_log_in(request, user, *, wrong_passwords_since_last: int = 0) -> None:
    """A successful log-in on any path (portal.backends.ThrottledModelBackend), on the record,
    with the wrong passwords tried on the account since its last log-in, if any."""
    details = {"user": user.get_username()}
    if wrong_passwords_since_last:
        details["wrong_passwords_since_last_log_in"] = wrong_passwords_since_last
    with acting(user, _ip(request)):
        _record(Action.LOGIN_SUCCEEDED, user, details)


def record_log_in_failed(request, user, *, failures: int) -> None:
    """A failed log-in for `user`, the account named if it exists (else None), on the record.

    An unknown name is not recorded: what was typed as a user name may be a password typed
    into the wrong field, and the history keeps it forever.
    """
    details = {"user": user.get_username() if user else None, "failures_in_window": failures}
    with acting(None, _ip(request)):
        _record(Action.LOGIN_FAILED, user, details)


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


def _ip(request) -> str | None:
    return client_ip(request) if request is not None else None
