"""How django-allauth fits the portal (docs/design.md §10): no sign-up, and each person lands
on their role's home page."""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse

from portal.backends import confirm_password
from portal.roles import home_page


class PortalAccountAdapter(DefaultAccountAdapter):
    error_messages = {
        **DefaultAccountAdapter.error_messages,
        # The words people met before allauth (Django's log-in form).
        "username_password_mismatch": "Please enter a correct username and password. "
        "Note that both fields may be case-sensitive.",
    }

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Accounts come from admins (adduser, Users, the Django admin), single sign-on or
        # provisioning, never from a visitor's own sign-up. allauth's social account adapter
        # asks this method too by default: single sign-on that creates users at their first
        # log-in answers for itself in its own adapter.
        return False

    def reauthenticate(self, user, password: str) -> bool:
        # allauth's own password confirmation page, on the terms of /confirm/ (portal/confirm.py):
        # behind the one log-in throttle, and not recorded as a log-in.
        try:
            return confirm_password(context.request, user, password)
        except PermissionDenied:
            return False

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        return reverse(home_page(request.user))
