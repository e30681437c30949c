"""Every route of the machine door, under /api/v1/.

Each route names its catalogue API through its view (`views.demo_list("risks").api`) and
takes an optional trailing slash, so `/api/v1/risks` and `/api/v1/risks/` are the same
authenticated view (no APPEND_SLASH redirect, which would answer before authentication).
"""

from django.urls import re_path

from keys.api import audit_pull, leaks, views

app_name = "api"

ITEM = r"(?P<item_id>[A-Za-z0-9-]{1,40})"

urlpatterns = [
    re_path(r"^whoami/?$", views.whoami, name="whoami"),
    re_path(r"^self/rotate/?$", views.self_rotate, name="self-rotate"),
    # Leak reports are signed by a secret scanner, not made with a key: no catalogue API.
    re_path(r"^leaks/?$", leaks.report, name="leaks"),
    # The audit history for SIEMs that poll: the Audit history API, granted read only.
    re_path(r"^audit/events/?$", audit_pull.events, name="audit-events"),
    re_path(r"^risks/?$", views.demo_list("risks"), name="risks-list"),
    re_path(rf"^risks/{ITEM}/?$", views.demo_item("risks"), name="risks-item"),
    re_path(r"^controls/?$", views.demo_list("controls"), name="controls-list"),
    re_path(rf"^controls/{ITEM}/?$", views.demo_item("controls"), name="controls-item"),
    re_path(r"^events/?$", views.demo_list("events"), name="events-list"),
    re_path(rf"^events/{ITEM}/?$", views.demo_item("events"), name="events-item"),
    re_path(r"^incidents/?$", views.demo_list("incidents"), name="incidents-list"),
    re_path(rf"^incidents/{ITEM}/?$", views.demo_item("incidents"), name="incidents-item"),
    re_path(r"^mois/?$", views.demo_list("mois"), name="mois-list"),
    re_path(rf"^mois/{ITEM}/?$", views.demo_item("mois"), name="mois-item"),
    re_path(r"^findings/?$", views.demo_list("findings"), name="findings-list"),
    re_path(rf"^findings/{ITEM}/?$", views.demo_item("findings"), name="findings-item"),
    re_path(r"^kris/?$", views.demo_list("kris"), name="kris-list"),
    re_path(rf"^kris/{ITEM}/?$", views.demo_item("kris"), name="kris-item"),
    re_path(r"^third-parties/?$", views.demo_list("third-parties"), name="third-parties-list"),
    re_path(
        rf"^third-parties/{ITEM}/?$", views.demo_item("third-parties"), name="third-parties-item"
    ),
]
