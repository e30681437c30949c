"""Single sign-on through OpenID Connect (docs/design.md §10), on django-allauth's
openid_connect provider configured from the environment (portal/settings.py, OIDC_*).

- A first log-in creates the user without a form: the user name is the provider's
  preferred_username, else the e-mail address. A user that already exists under that name
  (or verified e-mail address) and is not yet linked to the provider, made by an
  administrator, `adduser` or SCIM, is linked instead. A deactivated user never gets in: that
  is how a disabled corporate account stops working here.
- The roles come from the OIDC_ROLE_CLAIM claim through OIDC_ROLE_MAP at every log-in;
  a change is one roles_changed event, made by "single sign-on" (via "sso").
- The log-in itself is a login_succeeded event with method "sso" (one action for every way
  in, so the history of log-ins reads the same whatever the way).
- A provider that is down or answers garbage gives a page that says so (502), never a 500.
- "Confirm it's you" (keys/lib/reauth.py) for a person without a password here: the provider
  is asked to log them in afresh (prompt=login, max_age=0) with allauth's "redirect" process,
  which comes back without logging anyone in or out, so the session, and the form it holds,
  stays. Only the same person (the same subject), authenticated after the confirmation began
  (the ID token's auth_time), confirms; anyone else is refused and the session ends.
"""

import functools
import logging
import time

import requests
from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.internal.flows.login import record_authentication
from allauth.account.signals import user_logged_in
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter, get_adapter
from allauth.socialaccount.models import SocialAccount, SocialLogin
from allauth.socialaccount.providers.base import ProviderException
from allauth.socialaccount.providers.base.constants import AuthError, AuthProcess
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.openid_connect import views as oidc_views
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from keys.lib import reauth
from keys.lib.client_ip import client_ip
from portal import roles as portal_roles
from portal.env import OIDC_PROVIDER_ID
from portal.user_events import acting, one_roles_event, record_sso_log_in, record_sso_refused

logger = logging.getLogger(__name__)

PROVIDER_ID = OIDC_PROVIDER_ID
# Who made a change the provider's claims caused, in the audit history.
SOURCE_LABEL = "single sign-on"
PROVIDER_DOWN = (
    "The single sign-on provider did not answer. Try again later or ask an administrator."
)
# What a provider that is down or answers garbage raises on the way: no answer, an HTTP error,
# a token endpoint that refuses, a document that is no JSON or lacks an endpoint.
_PROVIDER_TROUBLE = (
    requests.RequestException,
    OAuth2Error,
    ProviderException,
    ValueError,
    KeyError,
)


def configured() -> bool:
    """Whether single sign-on is on (OIDC_ISSUER set)."""
    return bool(settings.OIDC_ISSUER)


def button_label() -> str:
    return settings.OIDC_BUTTON_LABEL


# --- claims -> the portal's user name and roles -----------------------------------------------


def _claims(sociallogin: SocialLogin) -> list[dict]:
    """The provider's claims, most complete first: the UserInfo answer, then the ID token."""
    data = sociallogin.account.extra_data or {}
    return [part for part in (data.get("userinfo"), data.get("id_token")) if part]


def _claim(sources: list[dict], name: str):
    """The first source's value of `name`; a dotted name reaches into objects."""
    for source in sources:
        value: object = source
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def roles_from_claim(value, role_map: dict[str, str]) -> set[str]:
    """The roles a claim's value gives through the map; none mapped gives staff."""
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    found = {role_map[item] for item in values if isinstance(item, str) and item in role_map}
    return found or {portal_roles.STAFF}


def _valid_username(name) -> str:
    if not isinstance(name, str) or not name:
        return ""
    field = get_user_model()._meta.get_field("username")
    try:
        field.run_validators(name)
    except ValidationError:
        return ""
    return name


def username_for(sources: list[dict]) -> str:
    """preferred_username, else the e-mail address, whichever is a valid user name first."""
    for claim in ("preferred_username", "email"):
        if name := _valid_username(_claim(sources, claim)):
            return name
    return ""


# --- the adapter django-allauth calls ----------------------------------------------------------


def _refuse(request: HttpRequest, message: str, *, status: int = 403) -> ImmediateHttpResponse:
    context = {"title": "Single sign-on refused", "message": message}
    return ImmediateHttpResponse(render(request, "portal/sso_problem.html", context, status=status))


def provider_unavailable(request: HttpRequest) -> HttpResponse:
    context = {"title": "Single sign-on unavailable", "message": PROVIDER_DOWN}
    response = render(request, "portal/sso_problem.html", context, status=502)
    response["Retry-After"] = "30"
    return response


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """Auto sign-up, linking to provisioned accounts, and the portal's refusals."""

    def is_open_for_signup(self, request, sociallogin) -> bool:
        # Nobody signs up with a password; the provider vouches for its people.
        return sociallogin.account.provider == PROVIDER_ID

    def is_auto_signup_allowed(self, request, sociallogin) -> bool:
        return True

    def populate_user(self, request, sociallogin, data):
        user = super().populate_user(request, sociallogin, data)
        user.username = username_for(_claims(sociallogin))
        return user

    def pre_social_login(self, request, sociallogin) -> None:
        if sociallogin.account.provider != PROVIDER_ID:
            return
        if sociallogin.state.get("process") == AuthProcess.REDIRECT:
            # Never a log-in, a sign-up or a link: only the confirmation below started one.
            _confirmed_at_the_provider(request, sociallogin)
            return
        if sociallogin.is_existing:
            self._refuse_inactive(request, sociallogin.user)
            return
        sources = _claims(sociallogin)
        username = username_for(sources)
        if not username:
            raise _refuse(
                request,
                "The single sign-on provider sent no user name the portal can use "
                "(preferred_username or email). Ask an administrator.",
            )
        user = self._provisioned_user(request, sources, username)
        if user is not None:
            self._refuse_inactive(request, user)
            # Linked for good: from now on the provider's subject finds this account.
            sociallogin.connect(request, user)
            sociallogin._portal_linked = True

    def _provisioned_user(self, request, sources: list[dict], username: str):
        """The existing account this first SSO log-in belongs to, if any (else None)."""
        email = _claim(sources, "email") if _claim(sources, "email_verified") is True else None
        # Whatever the case: providers compare names without it (Entra ID's UPNs, say).
        match = Q(username__iexact=username)
        if email:
            match |= Q(email__iexact=email)
        found = list(get_user_model().objects.filter(match)[:2])
        if len(found) > 1:
            raise _refuse(
                request,
                f"More than one account matches {username}: ask an administrator to sort "
                "them out before you sign in.",
            )
        if not found:
            if _claim(sources, "email") and self._email_taken(_claim(sources, "email")):
                raise _refuse(
                    request,
                    "Another account already has your e-mail address. Ask an administrator.",
                )
            return None
        user = found[0]
        if user.get_username() in settings.SSO_BREAK_GLASS_ACCOUNTS:
            raise _refuse(
                request,
                f"{user.get_username()} is a local break-glass account: it logs in with its "
                "password, never through single sign-on.",
            )
        if SocialAccount.objects.filter(user=user, provider=PROVIDER_ID).exists():
            raise _refuse(
                request,
                f"The account {user.get_username()} belongs to another person at the single "
                "sign-on provider. Ask an administrator.",
            )
        return user

    @staticmethod
    def _email_taken(email) -> bool:
        return isinstance(email, str) and (
            get_user_model().objects.filter(email__iexact=email).exists()
        )

    @staticmethod
    def _refuse_inactive(request, user) -> None:
        if user.is_active:
            return
        record_sso_refused(request, user, reason="deactivated")
        raise _refuse(
            request,
            f"The account {user.get_username()} is deactivated. Ask an administrator if "
            "that is a mistake.",
        )

    def save_user(self, request, sociallogin, form=None):
        # Created by the provider's word: so it reads in the history.
        with _by_the_provider(request):
            return super().save_user(request, sociallogin, form)

    def on_authentication_error(
        self, request, provider, error=None, exception=None, extra_context=None
    ) -> None:
        if error == AuthError.CANCELLED:
            raise _refuse(request, "Single sign-on was cancelled at the provider.", status=400)
        if exception is None and "error" not in request.GET:
            # No state for this answer: an old or foreign callback, not the provider's fault.
            raise _refuse(
                request,
                "Single sign-on did not complete (it took too long, or was started in another "
                "window). Try again.",
                status=400,
            )
        if exception is None or isinstance(exception, _PROVIDER_TROUBLE):
            # An error from the provider, or no usable answer from it.
            logger.warning(
                "Single sign-on provider trouble: %s",
                repr(exception) if exception else request.GET.get("error", "")[:100],
            )
            raise ImmediateHttpResponse(provider_unavailable(request))
        logger.warning("Single sign-on refused: %r", exception)
        raise _refuse(request, "Single sign-on was refused. Ask an administrator.")


def _by_the_provider(request):
    """Changes made on the provider's word: by "single sign-on", via sso, in the history."""
    return acting(None, client_ip(request), label=SOURCE_LABEL, via="sso")


# --- "Confirm it's you" through the provider (keys/lib/reauth.py) -----------------------------

# Marks the state of a confirmation started here: whose, and since when.
CONFIRM_FOR = "portal_confirm_for"
CONFIRM_SINCE = "portal_confirm_since"
# Clock difference between the provider and the portal tolerated on auth_time.
AUTH_TIME_LEEWAY = 5
ANOTHER_PERSON = (
    "You logged in at the single sign-on provider as someone else. To be safe you are logged "
    "out here: log in again as yourself."
)
NOT_AFRESH = (
    "The single sign-on provider did not ask you to log in again, so it cannot confirm it's "
    "you. Try again, or ask an administrator."
)


def confirmation_url(person) -> str | None:
    """Where `person` confirms through the provider: only if SSO is on and they are linked."""
    if (
        not configured()
        or not SocialAccount.objects.filter(user=person, provider=PROVIDER_ID).exists()
    ):
        return None
    return reverse("confirm_identity_sso")


def _start_confirmation(request: HttpRequest, back: str) -> HttpResponse:
    """Send the signed-in person to the provider, asking it to log them in afresh."""
    provider = get_adapter(request).get_provider(request, PROVIDER_ID)
    return provider.redirect(
        request,
        AuthProcess.REDIRECT,
        next_url=back or "/",
        auth_params={"prompt": "login", "max_age": "0"},
        **{CONFIRM_FOR: request.user.pk, CONFIRM_SINCE: time.time()},
    )


def _confirmed_at_the_provider(request: HttpRequest, sociallogin: SocialLogin) -> None:
    """The provider's answer to `start_confirmation`: the same person, logged in afresh,
    confirms (allauth's record of a re-authentication; portal.confirm.confirmed puts it on
    the record); anyone else is refused."""
    state, user = sociallogin.state, request.user
    if not user.is_authenticated or state.get(CONFIRM_FOR) != user.pk:
        raise _refuse(request, "Single sign-on did not complete. Try again.", status=400)
    if not sociallogin.is_existing or sociallogin.user.pk != user.pk:
        # Someone else at the provider: no switch of account mid-confirmation. Whoever holds
        # this session may have stolen it; it ends here.
        record_sso_refused(request, user, reason="another person at the provider")
        logger.warning("Single sign-on confirmation by another person refused")
        get_account_adapter(request).logout(request)
        raise _refuse(request, ANOTHER_PERSON)
    auth_time = _claim(_claims(sociallogin), "auth_time")
    since = state.get(CONFIRM_SINCE) or 0
    if not isinstance(auth_time, int | float) or auth_time < since - AUTH_TIME_LEEWAY:
        # The provider remembered the person instead of asking again: no proof of who is at
        # the keyboard now.
        raise _refuse(request, NOT_AFRESH)
    record_authentication(
        request,
        user,
        "socialaccount",
        reauthenticated=True,
        provider=sociallogin.account.provider,
        uid=sociallogin.account.uid,
    )
    if f"{reauth.RESUME}=" in (state.get("next") or ""):
        messages.info(request, "Confirmed. What you typed is back: check it, then send it again.")
    else:
        messages.info(request, "Confirmed. You can go on.")


# --- every SSO log-in: roles from the claim, then the log-in on the record ----------------------


def after_sso_log_in(request, user, sociallogin) -> None:
    """Set the roles the provider's claim gives, and record the log-in (method sso)."""
    sources = _claims(sociallogin)
    wanted = roles_from_claim(_claim(sources, settings.OIDC_ROLE_CLAIM), settings.OIDC_ROLE_MAP)
    with transaction.atomic():
        with _by_the_provider(request), one_roles_event():
            portal_roles.set_roles(user, wanted)
        details = {
            "provider": settings.OIDC_ISSUER,
            "subject": sociallogin.account.uid,
            "roles": sorted(wanted),
        }
        if getattr(sociallogin, "_portal_linked", False):
            details["linked"] = True
        record_sso_log_in(request, user, details)


@receiver(user_logged_in, dispatch_uid="portal.sso.after_sso_log_in")
def _after_log_in(sender, request, user, sociallogin=None, **kwargs) -> None:
    if sociallogin is not None and sociallogin.account.provider == PROVIDER_ID:
        after_sso_log_in(request, user, sociallogin)


# --- allauth's views, with a provider that is down giving a page, not a 500 ------------------


def _provider_may_fail(view):
    @functools.wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except _PROVIDER_TROUBLE as error:
            # Discovery is read when the button is pressed: allauth lets its failure through.
            logger.warning("Single sign-on provider trouble: %r", error, exc_info=True)
            return provider_unavailable(request)

    return guarded


login = _provider_may_fail(oidc_views.login)
start_confirmation = _provider_may_fail(_start_confirmation)
callback = _provider_may_fail(oidc_views.callback)
