"""Every route of the keys app; portal/urls.py includes them at the site root.

Each /api/v1/ route names its catalogue API through its view (`api.demo_list("risks").api`)
and takes an optional trailing slash, so `/api/v1/risks` and `/api/v1/risks/` are the same
authenticated view (no APPEND_SLASH redirect, which would answer before authentication).
"""

from django.urls import include, path, re_path

from keys import all_keys_views, api, audit_views, leaks, views

ITEM = r"(?P<item_id>[A-Za-z0-9-]{1,40})"

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

api_routes = [
    re_path(r"^whoami/?$", api.whoami, name="whoami"),
    re_path(r"^self/rotate/?$", api.self_rotate, name="self-rotate"),
    # Leak reports are signed by a secret scanner, not made with a key: no catalogue API.
    re_path(r"^leaks/?$", leaks.report, name="leaks"),
    re_path(r"^risks/?$", api.demo_list("risks"), name="risks-list"),
    re_path(rf"^risks/{ITEM}/?$", api.demo_item("risks"), name="risks-item"),
    re_path(r"^controls/?$", api.demo_list("controls"), name="controls-list"),
    re_path(rf"^controls/{ITEM}/?$", api.demo_item("controls"), name="controls-item"),
    re_path(r"^events/?$", api.demo_list("events"), name="events-list"),
    re_path(rf"^events/{ITEM}/?$", api.demo_item("events"), name="events-item"),
    re_path(r"^incidents/?$", api.demo_list("incidents"), name="incidents-list"),
    re_path(rf"^incidents/{ITEM}/?$", api.demo_item("incidents"), name="incidents-item"),
    re_path(r"^mois/?$", api.demo_list("mois"), name="mois-list"),
    re_path(rf"^mois/{ITEM}/?$", api.demo_item("mois"), name="mois-item"),
    re_path(r"^findings/?$", api.demo_list("findings"), name="findings-list"),
    re_path(rf"^findings/{ITEM}/?$", api.demo_item("findings"), name="findings-item"),
    re_path(r"^kris/?$", api.demo_list("kris"), name="kris-list"),
    re_path(rf"^kris/{ITEM}/?$", api.demo_item("kris"), name="kris-item"),
    re_path(r"^third-parties/?$", api.demo_list("third-parties"), name="third-parties-list"),
    re_path(
        rf"^third-parties/{ITEM}/?$", api.demo_item("third-parties"), name="third-parties-item"
    ),
]

audit_pages = [
    path("", audit_views.history, name="history"),
    path("export.csv", audit_views.export_csv, name="export"),
    path("verify/", audit_views.verify_chain, name="verify"),
]

urlpatterns = [
    path("keys/", include((key_pages, "keys"))),
    path("api/v1/", include((api_routes, "api"))),
    path("all-keys/", all_keys_views.all_keys, name="all_keys"),
    path("all-keys/inventory.csv", all_keys_views.inventory, name="all_keys_inventory"),
    path("audit/", include((audit_pages, "audit"))),
]
