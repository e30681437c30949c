from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import health, user_views, views
from portal.login import PortalLoginView
from portal.scim import views as scim

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
]

# An unreachable database answers 503 wherever it fails (portal/errors.py).
handler500 = "portal.errors.server_error"
