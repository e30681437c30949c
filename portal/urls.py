from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import health, sso, user_views, views
from portal.login import PortalLoginView

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", PortalLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("profile/", views.profile, name="profile"),
    path("profile/email/", views.profile_email, name="profile_email"),
    path("", include("keys.urls")),  # keys/, api/v1/, all-keys/, audit/
    path("users/", user_views.user_list, name="users"),
    path("users/<str:username>/deactivate/", user_views.user_deactivate, name="user_deactivate"),
    path("admin/", admin.site.urls),
    # Single sign-on (portal/sso.py): allauth's views, with a provider that is down giving a
    # page that says so; before allauth's own URLs, which they stand in for.
    path("accounts/oidc/<str:provider_id>/login/", sso.login),
    path("accounts/oidc/<str:provider_id>/login/callback/", sso.callback),
    path("accounts/", include("allauth.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]

# An unreachable database answers 503 wherever it fails (portal/errors.py).
handler500 = "portal.errors.server_error"
