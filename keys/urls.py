"""Every route of the keys app; portal/urls.py includes them at the site root.

The key pages are written out here; the machine door (/api/v1/) and the ledger's pages
(/audit/) each have their own urls.py.
"""

from django.urls import include, path, re_path

from keys import all_keys_views, policy_views, views
from keys.api import gateway

key_pages = [
    path("", views.key_list, name="list"),
    path("add/", views.key_add, name="add"),
    path("add/ip-row/", views.ip_row, name="ip_row"),
    path("add/ip-row/remove/", views.ip_row_remove, name="ip_row_remove"),
    path("add/ip-row/mine/", views.ip_row_mine, name="ip_row_mine"),
    path("<str:identifier>/", views.key_detail, name="detail"),
    path("<str:identifier>/edit/", views.key_edit, name="edit"),
    path("<str:identifier>/revoke/", views.key_revoke, name="revoke"),
    path("<str:identifier>/regenerate/", views.key_regenerate, name="regenerate"),
    path("<str:identifier>/renew/", views.key_renew, name="renew"),
    path("<str:identifier>/allow/", views.key_allow_address, name="allow_address"),
    path("<str:identifier>/remove-ip/", views.key_remove_network, name="remove_network"),
    path("<str:identifier>/remove-api/", views.key_remove_api, name="remove_api"),
]

urlpatterns = [
    path("keys/", include((key_pages, "keys"))),
    path("api/v1/", include("keys.api.urls")),
    path("all-keys/", all_keys_views.all_keys, name="all_keys"),
    path("all-keys/revoke/", all_keys_views.revoke_matching, name="all_keys_revoke"),
    path("all-keys/inventory.csv", all_keys_views.inventory, name="all_keys_inventory"),
    path("audit/", include("keys.audit.urls")),
    path("policy/", policy_views.policy, name="policy"),
    path("policy/apply/", policy_views.policy_apply, name="policy_apply"),
    path("requests/", policy_views.requests, name="requests"),
    path(
        "requests/<str:identifier>/approve/", policy_views.request_approve, name="request_approve"
    ),
    path("requests/<str:identifier>/deny/", policy_views.request_deny, name="request_deny"),
    # The gateway check (keys/api/gateway.py): nginx, Caddy and Traefik ask the first with
    # headers naming the original request; Envoy appends the original path to the second.
    path("gateway/verify", gateway.verify, name="gateway_verify"),
    re_path(r"^gateway/verify(?P<envoy_path>/.*)$", gateway.verify, name="gateway_verify_path"),
]
