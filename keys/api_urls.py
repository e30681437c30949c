"""/api/v1/ routes, built from the endpoint registry of keys.api.

Each route takes an optional trailing slash, so `/api/v1/risks` and `/api/v1/risks/` are the
same authenticated view (no APPEND_SLASH redirect, which would answer before authentication).
"""

from django.urls import re_path

from keys import api, leaks

app_name = "api"
urlpatterns = [
    re_path(rf"^{endpoint.route}/?$", endpoint.view, name=endpoint.name)
    for endpoint in api.endpoints()
]
# Leak reports are signed by a secret scanner, not made with a key: no catalogue API.
urlpatterns.append(re_path(r"^leaks/?$", leaks.report, name="leaks"))
