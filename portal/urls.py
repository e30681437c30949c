from django.contrib import admin
from django.http import Http404
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from portal import confirm, health, sso, user_views, views
from portal.login import PortalLoginView, PortalLogoutView
from portal.scim import views as scim


def not_offered(request, *args, **kwargs):
    """django-allauth pages the portal does not offer: 404 (docs/design.md §10)."""
    raise Http404("Not offered here.")


urlpatterns = [
    path("", views.home, name="home"),
    path("login/", PortalLoginView.as_view(), name="login"),
    path("logout/", PortalLogoutView.as_view(), name="logout"),
    path("confirm/", confirm.confirm_identity, name="confirm_identity"),
    path("confirm/sso/", confirm.confirm_with_sso, name="confirm_identity_sso"),
    path("profile/", views.profile, name="profile"),
    path("profile/email/", views.profile_email, name="profile_email"),
    path("", include("keys.urls")),  # keys/, api/v1/, all-keys/, audit/
    path("users/", user_views.user_list, name="users"),
    path("users/<str:username>/deactivate/", user_views.user_deactivate, name="user_deactivate"),
    path("admin/", admin.site.urls),
    # SCIM 2.0 provisioning (portal/scim/): 404 unless SCIM_TOKEN is set.
    path("scim/v2/Users", scim.users, name="scim_users"),
    path("scim/v2/Users/<str:scim_id>", scim.user, name="scim_user"),
    path("scim/v2/ServiceProviderConfig", scim.service_provider_config),
    path("scim/v2/ResourceTypes", scim.resource_types),
    path("scim/v2/ResourceTypes/<str:name>", scim.resource_types),
    path("scim/v2/Schemas", scim.schemas),
    path("scim/v2/Schemas/<str:urn>", scim.schemas),
    path("scim/v2/<path:rest>", scim.unknown),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # django-allauth under accounts/. Its own log-in and log-out addresses lead to the ones
    # above; passwords are set by admins (adduser, the Django admin) and e-mail addresses on
    # the profile, so its password and e-mail pages are not offered.
    path("accounts/login/", RedirectView.as_view(pattern_name="login", query_string=True)),
    re_path(r"^accounts/(?:logout|password|email|confirm-email)/", not_offered),
    # Single sign-on (portal/sso.py): allauth's views, with a provider that is down giving a
    # page that says so. Nobody links or unlinks a provider account by hand, nor fills in a
    # sign-up form: allauth's pages for that are not offered either.
    path("accounts/oidc/<str:provider_id>/login/", sso.login),
    path("accounts/oidc/<str:provider_id>/login/callback/", sso.callback),
    re_path(r"^accounts/(?:3rdparty|social)/", not_offered),
    path("accounts/", include("allauth.urls")),
    # After allauth's: its own links and redirects (reverse("account_login")) find these.
    path("login/", PortalLoginView.as_view(), name="account_login"),
    path("logout/", PortalLogoutView.as_view(), name="account_logout"),
]

# An unreachable database answers 503 wherever it fails (portal/errors.py).
handler500 = "portal.errors.server_error"
