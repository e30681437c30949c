"""Authentication backends: log-in behind the one failure throttle, and every active user
is staff (docs/design.md §2)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.core.exceptions import PermissionDenied
from django.views.decorators.debug import sensitive_variables

from keys.lib import throttle
from keys.lib.client_ip import client_ip
from portal.roles import permissions_of_every_active_user
from portal.user_events import record_log_in


def login_buckets(request, username: str) -> list[throttle.Bucket]:
    """The throttle buckets a log-in as `username` from this request counts in."""
    return throttle.login_buckets(username, client_ip(request) if request else None)


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend behind keys.lib.throttle, on every log-in path alike: the portal's
    /login/, the Django admin's /admin/login/ and anything else that calls authenticate().

    While the account or the client network is locked, the password is not checked at all:
    PermissionDenied stops django.contrib.auth.authenticate() from trying any other backend.
    An unknown user name costs the same as a known one (ModelBackend hashes the password
    anyway) and counts in the same two buckets.
    """

    @sensitive_variables("password")
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        buckets = login_buckets(request, username)
        if throttle.locked_for(buckets):
            raise PermissionDenied("Too many failed log-in attempts.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            counts = [throttle.count_failure(bucket) for bucket in buckets]
            # On the record once a window per account (its first failure) and when it locks:
            # a flood of guesses adds two events, not one per guess.
            account = buckets[0]
            if counts[0] in (1, account.limit):
                record_log_in(request, username, succeeded=False, failures=counts[0])
        else:
            # The account starts afresh; the network keeps its count, or one valid account
            # would let its holder reset the budget for guessing everyone else's.
            throttle.clear(throttle.login_account(username))
            record_log_in(request, username, succeeded=True, user=user)
        return user


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
