"""The Audit history pages, under /audit/."""

from django.urls import path

from keys.audit import stream_views, views

app_name = "audit"

urlpatterns = [
    path("", views.history, name="history"),
    path("export.csv", views.export_csv, name="export"),
    path("verify/", views.verify_chain, name="verify"),
    path("streaming/", stream_views.streaming, name="streaming"),
    path("streaming/add/", stream_views.destination_add, name="stream_add"),
    path("streaming/<str:identifier>/", stream_views.destination_edit, name="stream_edit"),
    path(
        "streaming/<str:identifier>/remove/",
        stream_views.destination_remove,
        name="stream_remove",
    ),
    path("streaming/<str:identifier>/test/", stream_views.destination_test, name="stream_test"),
    path(
        "streaming/<str:identifier>/replay/",
        stream_views.destination_replay,
        name="stream_replay",
    ),
]
