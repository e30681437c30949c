"""/confirm/: confirm it's you before a protected act (docs/design.md §10, keys/lib/reauth.py).

The person types their password or a code from their authenticator app (TOTP; the form of
portal/mfa.py), or uses their passkey (django-allauth's WebAuthn page, which comes back here):
never a recovery code, which proves only that someone holds the paper. Every wrong password or
code counts in the one log-in throttle (portal.backends, portal.mfa). A right one becomes
django-allauth's own record of a re-authentication (so allauth's pages accept it too), and
`confirmed` below, which receives every such record whichever page made it (this one,
allauth's password, code and passkey pages), puts it in the signed history as
`identity_confirmed` with its method and opens a new REAUTH_SECONDS window. Then the person
goes back to the page they were on, with what they had typed in it.
"""

from typing import cast
from urllib.parse import urlencode

from allauth.account.internal.flows.login import record_authentication
from allauth.account.signals import authentication_step_completed
from allauth.mfa.models import Authenticator
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from keys.lib import reauth
from portal import sso
from portal.backends import confirm_password
from portal.mfa import ReauthenticateForm as ConfirmCodeForm
from portal.models import User
from portal.roles import home_page
from portal.user_events import record_identity_confirmed

NOT_RECOGNISED = "That is not your password. Type the password you log in with."
THROTTLED = "Too many wrong passwords or codes. Wait a few minutes, then try again."


class _Confirmation(forms.Form):
    def __init__(self, *args, request: HttpRequest, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request = request


class ConfirmPasswordForm(_Confirmation):
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        error_messages={"required": "Type your password to confirm it's you."},
    )

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


def _has_totp(person: User) -> bool:
    return Authenticator.objects.filter(user=person, type=Authenticator.Type.TOTP).exists()


def _passkey_url(person: User, back: str) -> str | None:
    """django-allauth's passkey confirmation, when passkeys are on and the person has one."""
    if not Authenticator.objects.filter(user=person, type=Authenticator.Type.WEBAUTHN).exists():
        return None
    try:
        url = reverse("mfa_reauthenticate_webauthn")
    except NoReverseMatch:
        return None
    return f"{url}?{urlencode({'next': back})}"


def sso_confirmation_url(person: User, back: str) -> str | None:
    """Where a person without a password here confirms: their single sign-on provider, asked
    to log them in afresh (portal/sso.py); None if they have no account there."""
    url = sso.confirmation_url(person)
    return f"{url}?{urlencode({'next': back})}" if url else None


@sensitive_post_parameters()
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def confirm_identity(request: HttpRequest) -> HttpResponse:
    back = _next(request)
    person = cast(User, request.user)  # behind login_required: a signed-in person
    has_password, has_totp = person.has_usable_password(), _has_totp(person)
    data = request.POST if request.method == "POST" else None
    method = request.POST.get("method") if data is not None else None
    password_form = ConfirmPasswordForm(
        data if method == "password" else None, request=request, prefix="password"
    )
    # The second factor's own confirmation form (portal/mfa.py): TOTP only, behind the throttle.
    code_form = ConfirmCodeForm(data if method == "totp" else None, user=person, prefix="totp")
    if method == "password" and has_password and password_form.is_valid():
        record_authentication(request, person, method="password", reauthenticated=True)
        return _continue(request, back)
    if method == "totp" and has_totp and code_form.is_valid():
        code_form.save()  # allauth's record of a re-authentication: `confirmed` below
        return _continue(request, back)
    context = {
        "password_form": password_form if has_password else None,
        "code_form": code_form if has_totp else None,
        "passkey_url": _passkey_url(person, back),
        "sso_url": None if has_password else sso_confirmation_url(person, back),
        "next": back,
        "reauth_seconds": settings.REAUTH_SECONDS,
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "portal/confirm.html", context, status=status)


@never_cache
@require_http_methods(["POST"])
@login_required
def confirm_with_sso(request: HttpRequest) -> HttpResponse:
    """Go to the single sign-on provider to confirm; it comes back to `next`."""
    person = cast(User, request.user)
    if person.has_usable_password() or sso.confirmation_url(person) is None:
        return redirect(f"{reverse('confirm_identity')}?{urlencode({'next': _next(request)})}")
    return sso.start_confirmation(request, _next(request))


def _continue(request: HttpRequest, back: str) -> HttpResponse:
    if f"{reauth.RESUME}=" in back:
        messages.info(request, "Confirmed. What you typed is back: check it, then send it again.")
    else:
        messages.info(request, "Confirmed. You can go on.")
    return redirect(back or home_page(request.user))


# What django-allauth records a confirmation as -> the method the history names.
_METHODS = {
    ("password", None): "password",
    ("mfa", Authenticator.Type.TOTP): "totp",
    ("mfa", Authenticator.Type.WEBAUTHN): "passkey",
    ("socialaccount", None): "sso",
}


@receiver(authentication_step_completed, dispatch_uid="portal.confirm.confirmed")
def confirmed(sender, request, method: str, user, reauthenticated: bool = False, **extra):
    """A re-authentication on any page: on the record, then a new window. A recovery code
    never counts (portal.mfa.ReauthenticateForm refuses one; were one taken, it is ignored)."""
    if not reauthenticated or request is None:
        return
    kind = _METHODS.get((method, extra.get("type") if method == "mfa" else None))
    if kind is None:
        return
    record_identity_confirmed(request, user, method=kind)
    reauth.mark_proved(request)
