"""Authentication backends: log-in behind the one failure throttle (or not at all with a
password when SSO_ONLY is on, but for the break-glass accounts), and every active user is
staff (docs/design.md §2)."""

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.core.exceptions import PermissionDenied, ValidationError
from django.views.decorators.debug import sensitive_variables

from keys.lib import throttle
from keys.lib.client_ip import client_ip
from portal import devices
from portal.roles import permissions_of_every_active_user
from portal.user_events import record_log_in, record_log_in_failed, record_log_in_locked

THROTTLED_MESSAGE = "Too many failed log-in attempts. Try again in %(minutes)s."


def throttled_error(seconds: int) -> ValidationError:
    """What a form says while the throttle refuses for `seconds` more."""
    minutes = -(-seconds // 60)
    return ValidationError(
        THROTTLED_MESSAGE,
        code="throttled",
        params={"minutes": f"{minutes} minute{'s' if minutes != 1 else ''}"},
    )


def login_buckets(request, username: str) -> throttle.LogInBuckets:
    """The throttle buckets a log-in as `username` from this request counts in."""
    return throttle.login_buckets(
        username,
        client_ip(request) if request is not None else None,
        devices.device_of(request, username),
    )


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend behind keys.lib.throttle, on every log-in path alike: the portal's
    /login/, the Django admin's /admin/login/ and anything else that calls authenticate().

    While the buckets of this attempt refuse, the password is not checked at all:
    PermissionDenied stops django.contrib.auth.authenticate() from trying any other backend.
    An unknown user name costs the same as a known one (ModelBackend hashes the password
    anyway) and counts in the same buckets. A browser with the account's signed device
    cookie (portal/devices.py) counts in a bucket of its own instead of its network's, so
    nobody's failures elsewhere lock the person out (keys/lib/throttle.py, LogInBuckets).
    """

    @sensitive_variables("password")
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        if password_refused(username):
            # The password is not even checked: nothing to guess, nothing to count.
            raise PermissionDenied("Single sign-on only.")
        buckets = login_buckets(request, username)
        if throttle.login_locked_for(buckets):
            raise PermissionDenied("Too many failed log-in attempts.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            count_failed_log_in(request, username, buckets)
        else:
            self._succeeded(request, user, buckets)
        return user

    def _succeeded(self, request, user, buckets: throttle.LogInBuckets) -> None:
        # This browser, or this account from this network, starts afresh. The account's
        # budget across networks does not: a guesser elsewhere gains nothing from the
        # person's log-in. The network keeps its count, or one valid account would let its
        # holder reset the budget for guessing everyone else's.
        throttle.clear(buckets.device or buckets.pair)
        devices.remember(request, user.get_username())
        if not is_mfa_enabled(user):
            complete_log_in(request, user)
        # else the log-in is complete, and on the record, after the second factor
        # (portal/mfa.py); the wrong passwords before it are told then.


def complete_log_in(request, user, **details) -> None:
    """A log-in with every step done: on the record, with the wrong passwords since the last."""
    unseen = throttle.take_unseen_failures(user.pk)
    record_log_in(request, user, wrong_passwords_since_last=unseen, **details)
    if unseen and request is not None:
        messages.warning(request, _unseen_message(unseen), fail_silently=True)


def count_failure(request, username: str, user) -> int:
    """Count a wrong second-factor code like a wrong password; record the locks it sets.

    Returns the account's failures in the window.
    """
    buckets = login_buckets(request, username)
    counts = throttle.count_login_failure(buckets)
    for scope, failures in _locks(buckets, counts):
        record_log_in_locked(request, user, scope=scope, failures=failures)
    return counts[buckets.account] or 0


def count_failed_log_in(
    request, username: str, buckets: throttle.LogInBuckets, *, confirming: bool = False
) -> None:
    """Count a wrong password or code for `username` in the one log-in throttle, on the record.

    `confirming`: typed to confirm who one is (portal/confirm.py), not to log in.
    """
    counts = throttle.count_login_failure(buckets)
    known = _user_named(username)
    if known is not None:
        throttle.count_unseen_failure(known.pk)
    # On the record once a window per account (its first failure) and when a bucket
    # locks: a flood of guesses adds a few events per account and window, not one each.
    account = counts[buckets.account]
    if account == 1:
        record_log_in_failed(request, known, failures=account, confirming=confirming)
    for scope, failures in _locks(buckets, counts):
        record_log_in_locked(request, known, scope=scope, failures=failures)


@sensitive_variables("password")
def confirm_password(request, user, password: str) -> bool:
    """True if `password` is the signed-in `user`'s own, checked behind the log-in throttle.

    A wrong one counts as a failed log-in does; while the throttle refuses, the password is
    not checked and PermissionDenied is raised (as for a log-in).
    """
    buckets = login_buckets(request, user.get_username())
    if throttle.login_locked_for(buckets):
        raise PermissionDenied("Too many failed log-in attempts.")
    if user.is_active and user.check_password(password):
        throttle.clear(buckets.device or buckets.pair)
        return True
    count_failed_log_in(request, user.get_username(), buckets, confirming=True)
    return False


def password_refused(username: str) -> bool:
    """Whether SSO_ONLY refuses a password log-in as `username` (not a break-glass account)."""
    return settings.SSO_ONLY and username not in settings.SSO_BREAK_GLASS_ACCOUNTS


def _user_named(username: str):
    model = get_user_model()
    return model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()


def _locks(buckets: throttle.LogInBuckets, counts: dict) -> list[tuple[str, int]]:
    """The locks this failure set, by scope, each once per window (user_events names them).

    Past the account's budget, a network locks at its first failure; those locks are not
    recorded one by one (a guesser with many addresses would write one event per guess):
    the event that the budget was passed says they now happen.
    """
    locks = []
    account = counts[buckets.account]
    if buckets.device is not None and counts[buckets.device] == buckets.device.limit:
        locks.append(("browser", counts[buckets.device]))
    if (
        buckets.pair is not None
        and counts.get(buckets.pair) == buckets.pair.limit
        and not buckets.past_budget(account)
    ):
        locks.append(("network", counts[buckets.pair]))
    if account == settings.LOGIN_THROTTLE_ACCOUNT_BUDGET:
        locks.append(("account budget", account))
    if buckets.network is not None and counts.get(buckets.network) == buckets.network.limit:
        locks.append(("network, every user name", counts[buckets.network]))
    return locks


def _unseen_message(wrong_passwords: int) -> str:
    tried = "wrong password was" if wrong_passwords == 1 else "wrong passwords were"
    return (
        f"{wrong_passwords} {tried} tried on your account since your last log-in. "
        "If that was not you, tell an administrator."
    )


class EveryActiveUserIsStaff(BaseBackend):
    """Grants every active user the permissions portal.roles gives them beyond their groups.

    Authenticates nobody (ModelBackend does that); only adds these permissions, so a user
    created in the Django admin without a group can still create keys.
    """

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return set()
        if not hasattr(user_obj, "_every_user_perm_cache"):
            roles = set(user_obj.groups.values_list("name", flat=True))
            user_obj._every_user_perm_cache = permissions_of_every_active_user(roles)
        return user_obj._every_user_perm_cache

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)
