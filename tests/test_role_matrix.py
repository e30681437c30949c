"""Every portal URL, requested by every kind of user, answers what their role allows.

One row per URL pattern and method: the status for anonymous, alice (staff, owns the key),
bob (other staff), carol (admin) and dave (auditor). A visitor who is not signed in is sent
to log in and back; a refused request (403, 404, 405, or to log in) changes nothing. A URL
pattern without a row fails test_every_portal_url_has_a_row, so a new page cannot ship
without deciding who may use it.
The Django admin (/admin/), static files and the protected API (/api/, tested in its own
files) are outside the portal pages.
"""

from urllib.parse import quote

import pytest
from django.urls import URLResolver, get_resolver

from keys.models import AuditEvent

PERSONAS = ("anonymous", "alice", "bob", "carol", "dave")
NOT_PORTAL_PAGES = ("admin/", "static/", "api/")


def statuses(anonymous, alice, bob, carol, dave) -> dict[str, int]:
    return dict(zip(PERSONAS, (anonymous, alice, bob, carol, dave), strict=True))


def everyone(status: int) -> dict[str, int]:
    return statuses(*[status] * len(PERSONAS))


# route pattern -> (URL to request, {method: statuses}); {key} is alice's key, {user} is bob.
# Empty POSTs: a form that may be used answers 200 with its errors, or does its harmless
# default (alice revoking her own key needs no reason; carol deactivating bob needs none).
MATRIX = {
    "": ("/", {"GET": everyone(302)}),
    "login/": ("/login/", {"GET": statuses(200, 302, 302, 302, 302)}),
    "logout/": ("/logout/", {"GET": everyone(405), "POST": everyone(302)}),
    "profile/": ("/profile/", {"GET": statuses(302, 200, 200, 200, 200)}),
    "profile/email/": (
        "/profile/email/",
        {"GET": statuses(302, 405, 405, 405, 403), "POST": statuses(302, 200, 200, 200, 403)},
    ),
    "keys/": ("/keys/", {"GET": statuses(302, 200, 200, 200, 200), "POST": everyone(405)}),
    "keys/add/": (
        "/keys/add/",
        {"GET": statuses(302, 200, 200, 200, 403), "POST": statuses(302, 200, 200, 200, 403)},
    ),
    "keys/add/ip-row/": (
        "/keys/add/ip-row/",
        {"GET": statuses(302, 302, 302, 302, 403), "POST": statuses(302, 200, 200, 200, 403)},
    ),
    "keys/add/ip-row/remove/": (
        "/keys/add/ip-row/remove/",
        {"GET": statuses(302, 302, 302, 302, 403), "POST": statuses(302, 200, 200, 200, 403)},
    ),
    "keys/add/ip-row/mine/": (
        "/keys/add/ip-row/mine/",
        {"GET": statuses(302, 302, 302, 302, 403), "POST": statuses(302, 200, 200, 200, 403)},
    ),
    "keys/<str:identifier>/": (
        "/keys/{key}/",
        {"GET": statuses(302, 200, 404, 200, 200), "POST": everyone(405)},
    ),
    "keys/<str:identifier>/edit/": (
        "/keys/{key}/edit/",
        {"GET": statuses(302, 200, 404, 403, 403), "POST": statuses(302, 200, 404, 403, 403)},
    ),
    "keys/<str:identifier>/revoke/": (
        "/keys/{key}/revoke/",
        {"GET": statuses(302, 200, 404, 200, 403), "POST": statuses(302, 302, 404, 200, 403)},
    ),
    "keys/<str:identifier>/regenerate/": (
        "/keys/{key}/regenerate/",
        {"GET": statuses(302, 200, 404, 403, 403), "POST": statuses(302, 200, 404, 403, 403)},
    ),
    "keys/<str:identifier>/renew/": (
        "/keys/{key}/renew/",
        {"GET": statuses(302, 200, 404, 403, 403), "POST": statuses(302, 200, 404, 403, 403)},
    ),
    "keys/<str:identifier>/allow/": (
        "/keys/{key}/allow/",
        {"GET": statuses(302, 405, 405, 405, 403), "POST": statuses(302, 302, 404, 403, 403)},
    ),
    "keys/<str:identifier>/remove-ip/": (
        "/keys/{key}/remove-ip/",
        {"GET": statuses(302, 405, 405, 405, 403), "POST": statuses(302, 302, 404, 403, 403)},
    ),
    "keys/<str:identifier>/remove-api/": (
        "/keys/{key}/remove-api/",
        {"GET": statuses(302, 405, 405, 405, 403), "POST": statuses(302, 302, 404, 403, 403)},
    ),
    "all-keys/": (
        "/all-keys/",
        {"GET": statuses(302, 403, 403, 200, 200), "POST": everyone(405)},
    ),
    # An empty POST (no reason) is refused next to the field: 400, nothing revoked.
    "all-keys/revoke/": (
        "/all-keys/revoke/?owner=alice",
        {"GET": statuses(302, 403, 403, 200, 403), "POST": statuses(302, 403, 403, 400, 403)},
    ),
    "all-keys/inventory.csv": (
        "/all-keys/inventory.csv",
        {"GET": statuses(302, 403, 403, 200, 200), "POST": everyone(405)},
    ),
    "audit/": ("/audit/", {"GET": statuses(302, 403, 403, 200, 200), "POST": everyone(405)}),
    "audit/verify/": (
        "/audit/verify/",
        {"GET": statuses(302, 403, 403, 405, 405), "POST": statuses(302, 403, 403, 302, 302)},
    ),
    "audit/export.csv": (
        "/audit/export.csv",
        {"GET": statuses(302, 403, 403, 200, 200), "POST": everyone(405)},
    ),
    "users/": ("/users/", {"GET": statuses(302, 403, 403, 200, 403), "POST": everyone(405)}),
    "users/<str:username>/deactivate/": (
        "/users/{user}/deactivate/",
        {"GET": statuses(302, 403, 403, 200, 403), "POST": statuses(302, 403, 403, 302, 403)},
    ),
    # The key policy and its requests: admins only (an empty POST is a form with errors).
    "policy/": (
        "/policy/",
        {"GET": statuses(302, 403, 403, 200, 403), "POST": statuses(302, 403, 403, 200, 403)},
    ),
    "policy/apply/": (
        "/policy/apply/",
        {"GET": statuses(302, 403, 403, 405, 403), "POST": statuses(302, 403, 403, 400, 403)},
    ),
    "requests/": ("/requests/", {"GET": statuses(302, 403, 403, 200, 403), "POST": everyone(405)}),
    # Alice's key has no open request: nothing to decide.
    "requests/<str:identifier>/approve/": (
        "/requests/{key}/approve/",
        {"GET": statuses(302, 403, 403, 405, 403), "POST": statuses(302, 403, 403, 404, 403)},
    ),
    "requests/<str:identifier>/deny/": (
        "/requests/{key}/deny/",
        {"GET": statuses(302, 403, 403, 405, 403), "POST": statuses(302, 403, 403, 404, 403)},
    ),
    "healthz": ("/healthz", {"GET": everyone(200)}),
    "readyz": ("/readyz", {"GET": everyone(200)}),
    # The gateway check answers trusted proxies only: to a browser, signed in or not, 404.
    "gateway/verify": ("/gateway/verify", {"GET": everyone(404), "POST": everyone(404)}),
    "^gateway/verify(?P<envoy_path>/.*)$": (
        "/gateway/verify/api/v1/risks/",
        {"GET": everyone(404), "POST": everyone(404)},
    ),
    # SCIM answers an identity provider's bearer token only, never a session; with SCIM off
    # (no SCIM_TOKEN, as here) it does not exist. tests/test_scim.py covers it switched on.
    "scim/v2/Users": ("/scim/v2/Users", {"GET": everyone(404), "POST": everyone(404)}),
    "scim/v2/Users/<str:scim_id>": (
        "/scim/v2/Users/00000000-0000-4000-8000-000000000000",
        {"GET": everyone(404), "PATCH": everyone(404), "DELETE": everyone(404)},
    ),
    "scim/v2/ServiceProviderConfig": ("/scim/v2/ServiceProviderConfig", {"GET": everyone(404)}),
    "scim/v2/ResourceTypes": ("/scim/v2/ResourceTypes", {"GET": everyone(404)}),
    "scim/v2/ResourceTypes/<str:name>": ("/scim/v2/ResourceTypes/User", {"GET": everyone(404)}),
    "scim/v2/Schemas": ("/scim/v2/Schemas", {"GET": everyone(404)}),
    "scim/v2/Schemas/<str:urn>": ("/scim/v2/Schemas/x", {"GET": everyone(404)}),
    "scim/v2/<path:rest>": ("/scim/v2/Groups", {"GET": everyone(404)}),
}

# What only reads: an auditor may never get past the permission check anywhere else.
READ_ONLY = {"", "login/", "logout/", "profile/", "keys/", "keys/<str:identifier>/"}
READ_ONLY |= {"all-keys/", "audit/", "audit/export.csv", "users/", "healthz", "readyz"}
READ_ONLY |= {"requests/"}
# Checking the chain reads it; the result is kept outside it (keys.models.ChainVerification).
READ_ONLY |= {"all-keys/inventory.csv", "audit/verify/"}
READ_ONLY |= {"gateway/verify", "^gateway/verify(?P<envoy_path>/.*)$"}
READ_ONLY |= {route for route in MATRIX if route.startswith("scim/")}


def portal_routes(patterns=None, prefix: str = "") -> list[str]:
    found = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if route.startswith(NOT_PORTAL_PAGES):
            continue
        if isinstance(pattern, URLResolver):
            found += portal_routes(pattern.url_patterns, route)
        else:
            found.append(route)
    return found


def test_every_portal_url_has_a_row():
    routes = portal_routes()
    missing = sorted(set(routes) - set(MATRIX))
    assert not missing, f"Add these URL patterns to MATRIX in {__file__}: {missing}"
    assert not sorted(set(MATRIX) - set(routes)), "MATRIX has rows for URLs that do not exist"


@pytest.mark.parametrize(
    ("route", "method", "persona"),
    [
        (route, method, persona)
        for route, (_url, methods) in MATRIX.items()
        for method in methods
        for persona in PERSONAS
    ],
)
def test_role_matrix(route, method, persona, request, client, alice, bob, carol, dave, make_key):
    key, _ = make_key(alice, name="Matrix key")
    url_template, methods = MATRIX[route]
    url = url_template.format(key=key.identifier, user=bob.username)
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    events = AuditEvent.objects.count()
    response = getattr(client, method.lower())(url)
    assert response.status_code == methods[method][persona], (
        f"{method} {url} as {persona}: {response.status_code}"
    )
    to_log_in = persona == "anonymous" and response.status_code == 302
    if to_log_in and route not in ("logout/", ""):
        # and back here afterwards, the query string too
        assert response["Location"] == f"/login/?next={quote(url, safe='/')}"
    if to_log_in or response.status_code in (403, 404, 405):
        # Refused: nothing changed, since every change appends its event to the history.
        assert AuditEvent.objects.count() == events, f"{method} {url} as {persona} changed it"


@pytest.mark.parametrize("route", sorted(set(MATRIX) - READ_ONLY))
def test_every_write_url_answers_403_to_an_auditor(route):
    _url, methods = MATRIX[route]
    assert {method: row["dave"] for method, row in methods.items()} == dict.fromkeys(methods, 403)
