"""Every portal URL, requested by every kind of user, answers what their role allows.

One row per URL pattern and method: the status for anonymous, alice (staff, owns the key),
bob (other staff), carol (admin) and dave (auditor). A visitor who is not signed in is sent
to log in and back; a refused request (403, 404, 405, or to log in) changes nothing. A URL
pattern without a row fails test_every_portal_url_has_a_row, so a new page cannot ship
without deciding who may use it.
The Django admin (/admin/), static files and the protected API (/api/, tested in its own
files) are outside the portal pages.
"""

from urllib.parse import quote, unquote

import pytest
from django.urls import URLResolver, get_resolver

from keys.models import AuditEvent, StreamDestination

PERSONAS = ("anonymous", "alice", "bob", "carol", "dave")
NOT_PORTAL_PAGES = ("admin/", "static/", "api/")


def statuses(anonymous, alice, bob, carol, dave) -> dict[str, int]:
    return dict(zip(PERSONAS, (anonymous, alice, bob, carol, dave), strict=True))


def everyone(status: int) -> dict[str, int]:
    return statuses(*[status] * len(PERSONAS))


# route pattern -> (URL to request, {method: statuses}); {key} is alice's key, {user} is bob,
# {destination} an audit stream destination.
# Empty POSTs: a form that may be used answers 200 with its errors, or does its harmless
# default (alice revoking her own key needs no reason; carol deactivating bob needs none).
MATRIX = {
    "": ("/", {"GET": everyone(302)}),
    "login/": ("/login/", {"GET": statuses(200, 302, 302, 302, 302)}),
    "logout/": ("/logout/", {"GET": everyone(405), "POST": everyone(302)}),
    "profile/": ("/profile/", {"GET": statuses(302, 200, 200, 200, 200)}),
    # Everyone signed in confirms it's them the same way; an empty password is refused (400).
    "confirm/": (
        "/confirm/",
        {"GET": statuses(302, 200, 200, 200, 200), "POST": statuses(302, 400, 400, 400, 400)},
    ),
    # Only a person linked to the single sign-on provider goes there; the rest back to confirm/.
    "confirm/sso/": ("/confirm/sso/", {"GET": everyone(405), "POST": everyone(302)}),
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
    "audit/streaming/": (
        "/audit/streaming/",
        {"GET": statuses(302, 403, 403, 200, 200), "POST": everyone(405)},
    ),
    "audit/streaming/add/": (
        "/audit/streaming/add/",
        {"GET": statuses(302, 403, 403, 200, 403), "POST": statuses(302, 403, 403, 400, 403)},
    ),
    "audit/streaming/<str:identifier>/": (
        "/audit/streaming/{destination}/",
        {"GET": statuses(302, 403, 403, 200, 403), "POST": statuses(302, 403, 403, 400, 403)},
    ),
    "audit/streaming/<str:identifier>/remove/": (
        "/audit/streaming/{destination}/remove/",
        {"GET": statuses(302, 403, 403, 200, 403), "POST": statuses(302, 403, 403, 302, 403)},
    ),
    # Send test to a port nothing listens on: refused at once, said in a message.
    "audit/streaming/<str:identifier>/test/": (
        "/audit/streaming/{destination}/test/",
        {"GET": statuses(302, 403, 403, 405, 403), "POST": statuses(302, 403, 403, 302, 403)},
    ),
    "audit/streaming/<str:identifier>/replay/": (
        "/audit/streaming/{destination}/replay/",
        {"GET": statuses(302, 403, 403, 405, 403), "POST": statuses(302, 403, 403, 400, 403)},
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
    # django-allauth (docs/design.md §10). Its log-in is /login/; sign-up is closed (200: the
    # page that says so); a signed-in person is sent home from log-in steps they do not need.
    "accounts/login/": ("/accounts/login/", {"GET": everyone(302), "POST": everyone(302)}),
    "accounts/signup/": (
        "/accounts/signup/",
        {"GET": statuses(200, 302, 302, 302, 302), "POST": statuses(200, 302, 302, 302, 302)},
    ),
    "accounts/inactive/": ("/accounts/inactive/", {"GET": everyone(200), "POST": everyone(405)}),
    "accounts/login/code/confirm/": (
        "/accounts/login/code/confirm/",
        {"GET": everyone(302), "POST": everyone(302)},
    ),
    "accounts/reauthenticate/": (
        "/accounts/reauthenticate/",
        {"GET": statuses(302, 200, 200, 200, 200), "POST": statuses(302, 200, 200, 200, 200)},
    ),
    "accounts/reauthenticate/code/": (
        "/accounts/reauthenticate/code/",
        {"GET": everyone(302), "POST": everyone(302)},
    ),
    "accounts/reauthenticate/code/confirm/": (
        "/accounts/reauthenticate/code/confirm/",
        {"GET": everyone(302), "POST": everyone(302)},
    ),
    # The second factor: each person's own (auditors too). Changing one first asks to confirm
    # it's you; codes and removal are there once a factor is.
    "accounts/2fa/": (
        "/accounts/2fa/",
        {"GET": statuses(302, 200, 200, 200, 200), "POST": statuses(302, 405, 405, 405, 405)},
    ),
    "accounts/2fa/authenticate/": (
        "/accounts/2fa/authenticate/",
        {"GET": everyone(302), "POST": everyone(302)},
    ),
    "accounts/2fa/reauthenticate/": (
        "/accounts/2fa/reauthenticate/",
        {"GET": everyone(302), "POST": everyone(302)},
    ),
    "accounts/2fa/totp/activate/": (
        "/accounts/2fa/totp/activate/",
        {"GET": everyone(302), "POST": everyone(302)},
    ),
    "accounts/2fa/totp/deactivate/": (
        "/accounts/2fa/totp/deactivate/",
        {"GET": statuses(302, 404, 404, 404, 404), "POST": statuses(302, 404, 404, 404, 404)},
    ),
    "accounts/2fa/recovery-codes/": (
        "/accounts/2fa/recovery-codes/",
        {"GET": statuses(302, 404, 404, 404, 404), "POST": statuses(302, 405, 405, 405, 405)},
    ),
    "accounts/2fa/recovery-codes/generate/": (
        "/accounts/2fa/recovery-codes/generate/",
        {"GET": everyone(302), "POST": everyone(302)},
    ),
    "accounts/2fa/recovery-codes/download/": (
        "/accounts/2fa/recovery-codes/download/",
        {"GET": statuses(302, 404, 404, 404, 404), "POST": statuses(302, 404, 404, 404, 404)},
    ),
    # Single sign-on (portal/sso.py): nothing there while no provider is configured, as here
    # (tests/test_sso*.py cover it configured). allauth's own patterns stand behind the
    # portal's, which answer the same addresses.
    **{
        route: (url, {"GET": everyone(404), "POST": everyone(404)})
        for route, url in [
            ("accounts/oidc/<str:provider_id>/login/", "/accounts/oidc/sso/login/"),
            (
                "accounts/oidc/<str:provider_id>/login/callback/",
                "/accounts/oidc/sso/login/callback/",
            ),
            ("accounts/oidc/^(?P<provider_id>[^/]+)/login/", "/accounts/oidc/sso/login/"),
            (
                "accounts/oidc/^(?P<provider_id>[^/]+)/login/callback/",
                "/accounts/oidc/sso/login/callback/",
            ),
        ]
    },
    # Not offered: linking or unlinking a provider account by hand, a social sign-up form.
    **{
        route: (url, {"GET": everyone(404), "POST": everyone(404)})
        for route, url in [
            ("^accounts/(?:3rdparty|social)/", "/accounts/3rdparty/"),
            ("accounts/3rdparty/", "/accounts/3rdparty/"),
            ("accounts/3rdparty/login/cancelled/", "/accounts/3rdparty/login/cancelled/"),
            ("accounts/3rdparty/login/error/", "/accounts/3rdparty/login/error/"),
            ("accounts/3rdparty/signup/", "/accounts/3rdparty/signup/"),
            ("accounts/social/connections/", "/accounts/social/connections/"),
            ("accounts/social/login/cancelled/", "/accounts/social/login/cancelled/"),
            ("accounts/social/login/error/", "/accounts/social/login/error/"),
            ("accounts/social/signup/", "/accounts/social/signup/"),
        ]
    },
    "accounts/2fa/webauthn/": (
        "/accounts/2fa/webauthn/",
        {"GET": statuses(302, 200, 200, 200, 200), "POST": statuses(302, 405, 405, 405, 405)},
    ),
    **{
        route: (url, {"GET": everyone(302), "POST": everyone(302)})
        for route, url in [
            ("accounts/2fa/webauthn/add/", "/accounts/2fa/webauthn/add/"),
            ("accounts/2fa/webauthn/keys/<int:pk>/edit/", "/accounts/2fa/webauthn/keys/1/edit/"),
            (
                "accounts/2fa/webauthn/keys/<int:pk>/remove/",
                "/accounts/2fa/webauthn/keys/1/remove/",
            ),
            ("accounts/2fa/webauthn/reauthenticate/", "/accounts/2fa/webauthn/reauthenticate/"),
        ]
    },
    # Not offered: passwords are set by admins, e-mail addresses on the profile.
    **{
        route: (url, {"GET": everyone(404), "POST": everyone(404)})
        for route, url in [
            ("^accounts/(?:logout|password|email|confirm-email)/", "/accounts/password/"),
            ("accounts/logout/", "/accounts/logout/"),
            ("accounts/email/", "/accounts/email/"),
            ("accounts/confirm-email/", "/accounts/confirm-email/"),
            ("accounts/^confirm-email/(?P<key>[-:\\w]+)/$", "/accounts/confirm-email/k/"),
            ("accounts/password/change/", "/accounts/password/change/"),
            ("accounts/password/set/", "/accounts/password/set/"),
            ("accounts/password/reset/", "/accounts/password/reset/"),
            ("accounts/password/reset/done/", "/accounts/password/reset/done/"),
            ("accounts/password/reset/key/done/", "/accounts/password/reset/key/done/"),
            (
                "accounts/^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
                "/accounts/password/reset/key/1-k/",
            ),
        ]
    },
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
# Anonymous visitors these send to the log-in page without a way back: a log-in step, or a
# page that has no meaning without one.
TO_LOG_IN_WITHOUT_NEXT = {
    "accounts/login/",
    "accounts/login/code/confirm/",
    "accounts/2fa/authenticate/",
}

# What only reads: an auditor may never get past the permission check anywhere else.
READ_ONLY = {"", "login/", "logout/", "profile/", "keys/", "keys/<str:identifier>/"}
READ_ONLY |= {"all-keys/", "audit/", "audit/export.csv", "users/", "healthz", "readyz"}
# A person's own way in (log-in steps, confirming it's you, their second factor): auditors too.
READ_ONLY |= {route for route in MATRIX if route.startswith(("accounts/", "^accounts/"))}
READ_ONLY |= {"audit/streaming/"}  # delivery figures; every change is admins' only
READ_ONLY |= {"requests/"}
# Checking the chain reads it; the result is kept outside it (keys.models.ChainVerification).
READ_ONLY |= {"all-keys/inventory.csv", "audit/verify/"}
READ_ONLY |= {"gateway/verify", "^gateway/verify(?P<envoy_path>/.*)$"}
# Confirming who one is changes no data: it only records the confirmation, for anyone signed in.
READ_ONLY |= {"confirm/", "confirm/sso/"}
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
    destination = StreamDestination.objects.create(
        name="Matrix", url="https://127.0.0.1:9/in", secret="s" * 64
    )
    url_template, methods = MATRIX[route]
    url = url_template.format(
        key=key.identifier, user=bob.username, destination=destination.identifier
    )
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    events = AuditEvent.objects.count()
    response = getattr(client, method.lower())(url)
    assert response.status_code == methods[method][persona], (
        f"{method} {url} as {persona}: {response.status_code}"
    )
    to_log_in = persona == "anonymous" and response.status_code == 302
    if to_log_in and route not in ("logout/", "", *TO_LOG_IN_WITHOUT_NEXT):
        # and back here afterwards, the query string too
        expected = f"/login/?next={quote(url, safe='/')}"
        if route.startswith("accounts/"):  # allauth quotes the slashes of `next` too
            assert unquote(response["Location"]) == unquote(expected)
        else:
            assert response["Location"] == expected
    if to_log_in or response.status_code in (403, 404, 405):
        # Refused: nothing changed, since every change appends its event to the history.
        assert AuditEvent.objects.count() == events, f"{method} {url} as {persona} changed it"


@pytest.mark.parametrize("route", sorted(set(MATRIX) - READ_ONLY))
def test_every_write_url_answers_403_to_an_auditor(route):
    _url, methods = MATRIX[route]
    assert {method: row["dave"] for method, row in methods.items()} == dict.fromkeys(methods, 403)
