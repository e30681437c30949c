from django.urls import path

from keys import audit_views

app_name = "audit"
urlpatterns = [
    path("", audit_views.history, name="history"),
    path("export.csv", audit_views.export_csv, name="export"),
]
