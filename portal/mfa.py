"""The second factor (docs/design.md §10): TOTP apps, passkeys and recovery codes through
django-allauth's mfa app, with the portal's throttle, history and required roles.

- Every wrong code (TOTP or recovery code, at log-in or when confirming it's you) counts in the
  same throttle buckets as a wrong password (portal.backends); while they refuse, no code is
  checked at all.
- Each factor added or removed, recovery codes made or used, and each wrong code is an event
  in the signed history (portal.user_events), naming the kind of factor, never a secret or code.
- MFA_REQUIRED_ROLES: a signed-in person with such a role and no factor reaches only the pages
  that add one, and log-out (SecondFactorRequiredMiddleware).
"""

from typing import Any

from allauth.account.signals import user_logged_in
from allauth.core import context
from allauth.mfa import signals
from allauth.mfa.base import forms as allauth_forms
from allauth.mfa.base.internal.flows import delete_dangling_recovery_codes
from allauth.mfa.models import Authenticator
from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse

from keys.api.problems import is_api_path
from keys.lib import throttle
from portal import user_events
from portal.backends import complete_log_in, count_failure, login_buckets, throttled_error

Type = Authenticator.Type
FACTOR_WORDS = {
    Type.TOTP: "authenticator app",
    Type.WEBAUTHN: "passkey",
    Type.RECOVERY_CODES: "recovery codes",
}


def has_second_factor(user) -> bool:
    """Whether `user` has an authenticator app or a passkey (recovery codes only back them up)."""
    return Authenticator.objects.filter(user=user, type__in=[Type.TOTP, Type.WEBAUTHN]).exists()


class _ThrottledCode:
    """A code form that asks the throttle first: while it refuses, no code is checked."""

    user: Any

    def clean_code(self) -> str:
        buckets = login_buckets(context.request, self.user.get_username())
        seconds = throttle.login_locked_for(buckets)
        if seconds:
            raise throttled_error(seconds)
        return super().clean_code()  # type: ignore[misc]


class AuthenticateForm(_ThrottledCode, allauth_forms.AuthenticateForm):
    """The code asked at log-in, after the password."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        code = self.fields["code"]
        code.help_text = "Six digits from the app, or a recovery code."
        code.widget.attrs.pop("placeholder", None)
        code.widget.attrs.update(autofocus=True, inputmode="text")


CODE_NOT_RECOGNISED = (
    "That is not the code your authenticator app shows now. Recovery codes do not confirm."
)


class CodeInput(forms.TextInput):
    """A code field that never shows back what was typed: it may have been a recovery code."""

    def format_value(self, value):
        return None


class _AuthenticatorAppOnly:
    """Confirming it's you takes the authenticator app's code, never a recovery code (§10):
    allauth's own form would also spend one of those."""

    user: Any

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip()  # type: ignore[attr-defined]
        apps = list(Authenticator.objects.filter(user=self.user, type=Type.TOTP))
        for authenticator in apps:
            if authenticator.wrap().validate_code(code):
                authenticator.user = self.user
                self.authenticator = authenticator
                return code
        # Counted like a wrong password, on the record (_code_refused below).
        main = apps[0] if apps else Authenticator.objects.filter(user=self.user).first()
        if main is not None:
            self._emit_authentication_failed(main)  # type: ignore[attr-defined]
        raise forms.ValidationError(CODE_NOT_RECOGNISED, code="incorrect_code")


class ReauthenticateForm(_ThrottledCode, _AuthenticatorAppOnly, allauth_forms.ReauthenticateForm):
    """The code asked to confirm it's you (portal/confirm.py, and allauth's own page)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        code = self.fields["code"]
        code.label = "Code from your authenticator app"
        code.error_messages["required"] = "Type the code your authenticator app shows."
        code.widget = CodeInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"})


@receiver(signals.authentication_failed, dispatch_uid="portal.mfa.failed")
def _code_refused(sender, request, user, authenticator, reauthentication=False, **kwargs):
    # Sent by allauth for a wrong TOTP or recovery code, naming the person's main factor.
    failures = count_failure(request, user.get_username(), user)
    user_events.record_second_factor_failed(
        request, user, reauthentication=bool(reauthentication), failures=failures
    )


@receiver(signals.authenticator_added, dispatch_uid="portal.mfa.added")
def _added(sender, request, user, authenticator, **kwargs):
    if authenticator.type == Type.RECOVERY_CODES:
        user_events.record_recovery_codes_made(request, user, again=False)
    else:
        user_events.record_factor_added(request, user, **_factor(authenticator))


@receiver(signals.authenticator_reset, dispatch_uid="portal.mfa.reset")
def _reset(sender, request, user, authenticator, **kwargs):
    if authenticator.type == Type.RECOVERY_CODES:
        user_events.record_recovery_codes_made(request, user, again=True)


@receiver(signals.authenticator_removed, dispatch_uid="portal.mfa.removed")
def _removed(sender, request, user, authenticator, **kwargs):
    user_events.record_factor_removed(request, user, **_factor(authenticator))


@receiver(signals.authenticator_used, dispatch_uid="portal.mfa.used")
def _used(sender, request, user, authenticator, reauthenticated=False, **kwargs):
    if request is not None:
        # The log-in this completes names it (below).
        request._second_factor = FACTOR_WORDS.get(authenticator.type, authenticator.type)
    if authenticator.type == Type.RECOVERY_CODES:
        # Read again: allauth marked the code used on a fresh copy of the row.
        stored = Authenticator.objects.get(pk=authenticator.pk)
        left = len(stored.wrap().get_unused_codes())
        user_events.record_recovery_code_used(request, user, codes_left=left)


@receiver(user_logged_in, dispatch_uid="portal.mfa.logged_in")
def _logged_in(sender, request, user, **kwargs):
    # A person with a second factor is on the record once both steps are done (the password
    # alone put nothing there: portal.backends).
    factor = getattr(request, "_second_factor", None)
    if factor:
        complete_log_in(request, user, second_factor=factor)


def remove_second_factor(authenticator, *, actor, ip: str | None) -> None:
    """Remove a person's factor for them (the Django admin: a lost phone), on the record."""
    with transaction.atomic():
        removed = [authenticator]
        authenticator.delete()
        # Recovery codes only back up a factor: with the last one, they go too (as allauth's).
        removed.append(delete_dangling_recovery_codes(authenticator.user))
        for gone in filter(None, removed):
            user_events.record_factor_removed(None, gone.user, by=actor, ip=ip, **_factor(gone))


def _factor(authenticator) -> dict:
    details = {"factor": FACTOR_WORDS.get(authenticator.type, authenticator.type)}
    if authenticator.type == Type.WEBAUTHN:
        details["name"] = authenticator.wrap().name  # the person's own label for it
    return details


# Where a person who must add a factor may still go (URL names): the enrolment pages, confirming
# it's you (adding a factor asks for it), and log-out.
ENROLMENT = frozenset(
    {
        "mfa_index",
        "mfa_activate_totp",
        "mfa_add_webauthn",
        "mfa_list_webauthn",
        "mfa_view_recovery_codes",
        "mfa_generate_recovery_codes",
        "mfa_download_recovery_codes",
        "account_reauthenticate",
        "logout",
        "account_logout",
        "login",
        "account_login",
    }
)


def must_enrol(user) -> list[str]:
    """The roles of `user` that require a second factor they do not have yet (else [])."""
    required = settings.MFA_REQUIRED_ROLES
    if not required or not user.is_authenticated:
        return []
    roles = sorted(required & set(user.groups.values_list("name", flat=True)))
    if not roles or has_second_factor(user):
        return []
    return roles


class SecondFactorRequiredMiddleware:
    """Sends a person whose role requires a second factor, and who has none, to add one.

    /api/ and /gateway/ take keys, not sessions; static files and the probes need no person.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _exempt(request):
            roles = must_enrol(request.user)
            if roles:
                messages.warning(
                    request,
                    f"Your role ({', '.join(roles)}) needs a second factor: add an "
                    "authenticator app or a passkey to go on.",
                    fail_silently=True,
                )
                if getattr(request, "htmx", None):  # a whole page, not inside a fragment
                    response = HttpResponse(status=204)
                    response["HX-Redirect"] = reverse("mfa_index")
                    return response
                return redirect("mfa_index")
        return self.get_response(request)


def _exempt(request: HttpRequest) -> bool:
    path = request.path_info
    if is_api_path(request) or path.startswith(
        ("/gateway/", "/" + settings.STATIC_URL.lstrip("/"))
    ):
        return True
    try:
        match = resolve(path)
    except Resolver404:
        return True  # a 404 shows nothing
    return match.url_name in ENROLMENT or match.url_name in {"healthz", "readyz"}
