"""The Audit history pages, under /audit/."""

from django.urls import path

from keys.audit import views

app_name = "audit"

urlpatterns = [
    path("", views.history, name="history"),
    path("export.csv", views.export_csv, name="export"),
    path("verify/", views.verify_chain, name="verify"),
]
