"""The log-in pages of the portal (django-allauth's, docs/design.md §10) and of the Django admin,
saying so when the throttle, or SSO_ONLY, is why a log-in failed
(portal.backends.ThrottledModelBackend applies both, on both)."""

from allauth.account.forms import LoginForm
from allauth.account.views import LoginView, LogoutView
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from keys.lib import throttle
from portal.backends import login_buckets, password_refused, throttled_error

# The error codes of a refused user name and password: Django's form, then allauth's.
REFUSED = {"invalid_login", "username_password_mismatch"}


class ThrottleMessageMixin:
    sso_only_message = (
        "Log-in with a password is turned off here: use Sign in with %(label)s. If the single "
        "sign-on provider is down, ask an administrator."
    )

    def typed_username(self) -> str | None:
        return self.cleaned_data.get("username")  # type: ignore[attr-defined]

    @sensitive_variables()
    def clean(self):
        try:
            return super().clean()
        except ValidationError as error:
            username = self.typed_username()
            if error.code not in REFUSED or not username:
                raise
            if password_refused(username):
                raise ValidationError(
                    self.sso_only_message,
                    code="sso_only",
                    params={"label": settings.OIDC_BUTTON_LABEL},
                ) from None
            seconds = throttle.login_locked_for(login_buckets(self.request, username))
            if not seconds:
                raise
            raise throttled_error(seconds) from None


class PortalLoginForm(ThrottleMessageMixin, LoginForm):
    """The portal's /login/ form: allauth's, with the field names and words of before.

    allauth calls its user name field `login`; it is sent as `username` (`id_username`), as
    the form always was, so password managers and links keep working.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs.pop("placeholder", None)  # the label says it, and stays
            field.help_text = ""  # no "Forgot your password?": there is no self-service reset
        self.fields["login"].widget.attrs["autofocus"] = True

    def add_prefix(self, field_name: str) -> str:
        return "username" if field_name == "login" else super().add_prefix(field_name)

    def typed_username(self) -> str | None:
        return self.cleaned_data.get("login")


class ThrottledAdminAuthenticationForm(ThrottleMessageMixin, AdminAuthenticationForm):
    """The Django admin's /admin/login/ form. It asks for no second factor, so a person who
    has one is sent to the portal's log-in, which does (portal/mfa.py)."""

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if is_mfa_enabled(user):
            raise ValidationError(
                "Your account has a second factor: log in on the portal's log-in page, "
                "then open the admin.",
                code="second_factor",
            )


class PortalLoginView(LoginView):
    """/login/: without a `next`, each person lands where `/` would take them
    (portal.accounts.PortalAccountAdapter)."""

    def get_context_data(self, **kwargs):
        # Sent here by the idle log-out (static/portal.js): say why, before asking again.
        context = super().get_context_data(**kwargs)
        context["signed_out_idle"] = self.request.GET.get("ended") == "idle"
        context["idle_seconds"] = settings.SESSION_COOKIE_AGE
        return context


class PortalLogoutView(LogoutView):
    """/logout/: a POST (the header's Log out button) signs out; a GET changes nothing."""

    http_method_names = ["post", "options"]
