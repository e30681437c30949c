"""The log-in forms of the portal and of the Django admin, saying so when the throttle, or
SSO_ONLY, is why a log-in failed (portal.backends.ThrottledModelBackend applies both)."""

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables

from keys.lib import throttle
from portal.backends import login_buckets, password_refused
from portal.roles import home_page


class ThrottleMessageMixin:
    throttled_message = "Too many failed log-in attempts. Try again in %(minutes)s."
    sso_only_message = (
        "Log-in with a password is turned off here: use Sign in with %(label)s. If the single "
        "sign-on provider is down, ask an administrator."
    )

    @sensitive_variables()
    def clean(self):
        try:
            return super().clean()
        except ValidationError as error:
            username = self.cleaned_data.get("username")
            if error.code != "invalid_login" or not username:
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
            minutes = -(-seconds // 60)
            raise ValidationError(
                self.throttled_message,
                code="throttled",
                params={"minutes": f"{minutes} minute{'s' if minutes != 1 else ''}"},
            ) from None


class ThrottledAuthenticationForm(ThrottleMessageMixin, AuthenticationForm):
    """The portal's /login/ form."""


class ThrottledAdminAuthenticationForm(ThrottleMessageMixin, AdminAuthenticationForm):
    """The Django admin's /admin/login/ form."""


class PortalLoginView(LoginView):
    """/login/: without a `next`, each person lands where `/` would take them."""

    redirect_authenticated_user = True
    authentication_form = ThrottledAuthenticationForm

    def get_default_redirect_url(self) -> str:
        return reverse(home_page(self.request.user))

    def get_context_data(self, **kwargs):
        # Sent here by the idle log-out (static/portal.js): say why, before asking again.
        context = super().get_context_data(**kwargs)
        context["signed_out_idle"] = self.request.GET.get("ended") == "idle"
        context["idle_seconds"] = settings.SESSION_COOKIE_AGE
        return context
