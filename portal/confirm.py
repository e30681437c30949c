"""/confirm/: confirm it's you before a protected act (docs/design.md §10, keys/lib/reauth.py).

The person types their password (or, once set up, a code from their authenticator app or
their passkey; never a recovery code: one of those proves only that someone holds the paper).
Every wrong entry counts in the one log-in throttle (portal.backends); a right one is recorded
as `identity_confirmed` with its method and opens a new REAUTH_SECONDS window, and the person
goes back to the page they were on, with what they had typed in it.
"""

from typing import cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from keys.lib import reauth
from portal.backends import confirm_password
from portal.models import User
from portal.roles import home_page
from portal.user_events import record_identity_confirmed

NOT_RECOGNISED = "That is not your password. Type the password you log in with."
THROTTLED = "Too many wrong passwords or codes. Wait a few minutes, then try again."


class ConfirmPasswordForm(forms.Form):
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        error_messages={"required": "Type your password to confirm it's you."},
    )

    def __init__(self, *args, request: HttpRequest, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request = request

    @sensitive_variables("password")
    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        try:
            right = confirm_password(self.request, self.request.user, password)
        except PermissionDenied:
            raise ValidationError(THROTTLED, code="throttled") from None
        if not right:
            raise ValidationError(NOT_RECOGNISED, code="wrong")
        return password


def _next(request: HttpRequest) -> str:
    """Where to go back to: a path on this site, else the person's home page."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


@sensitive_post_parameters()
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def confirm_identity(request: HttpRequest) -> HttpResponse:
    back = _next(request)
    person = cast(User, request.user)  # behind login_required: a signed-in person
    has_password = person.has_usable_password()
    form = ConfirmPasswordForm(request.POST if request.method == "POST" else None, request=request)
    if request.method == "POST" and has_password and form.is_valid():
        record_identity_confirmed(request, person, method="password")
        reauth.mark_proved(request)
        return _continue(request, back)
    context = {
        "form": form if has_password else None,
        "next": back,
        "reauth_seconds": settings.REAUTH_SECONDS,
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "portal/confirm.html", context, status=status)


def _continue(request: HttpRequest, back: str) -> HttpResponse:
    if f"{reauth.RESUME}=" in back:
        messages.info(request, "Confirmed. What you typed is back: check it, then send it again.")
    else:
        messages.info(request, "Confirmed. You can go on.")
    return redirect(back or home_page(request.user))
