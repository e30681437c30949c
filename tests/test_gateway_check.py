"""/gateway/verify (docs/design.md §9): a gateway asks whether a request may pass.

Called here as nginx, Caddy/Traefik and Envoy call it, from a trusted proxy at 10.0.0.2
whose X-Forwarded-For names the client. The real nginx and Caddy in front of a real upstream
are tests/test_gateway_proxies.py.
"""

import json

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from keys import actions, tokens
from keys.api import usage
from keys.models import ApiRoute, AuditEvent, KeyApiUse, KeyGrant, KeyUsageDay
from tests.api_calls import assert_the_401, basic

PROXY = "10.0.0.2"
CLIENT = "127.0.0.1"  # the address the test keys allow


@pytest.fixture(autouse=True)
def _behind_a_proxy(settings):
    settings.KEYS_TRUSTED_PROXIES = [PROXY]
    settings.KEYS_PROXY_HEADER = "HTTP_X_FORWARDED_FOR"


def nginx(client, uri, key=None, password=None, *, method="GET", client_ip=CLIENT, **headers):
    """The check as nginx's auth_request asks it (docs/gateways.md)."""
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = basic(key, password)
    return client.get(
        "/gateway/verify",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=client_ip,
        HTTP_X_ORIGINAL_METHOD=method,
        HTTP_X_ORIGINAL_URI=uri,
        **headers,
    )


def traefik(client, uri, key, password, *, method="GET", host="api.example.org", **headers):
    """The check as Traefik's ForwardAuth and Caddy's forward_auth ask it."""
    return client.get(
        "/gateway/verify",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=CLIENT,
        HTTP_X_FORWARDED_METHOD=method,
        HTTP_X_FORWARDED_URI=uri,
        HTTP_X_FORWARDED_HOST=host,
        HTTP_AUTHORIZATION=basic(key, password),
        **headers,
    )


def envoy(client, path, key, password, *, method="get", **headers):
    """The check as Envoy's ext_authz (HTTP) asks it: the original path appended."""
    return getattr(client, method)(
        "/gateway/verify" + path,
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=CLIENT,
        HTTP_AUTHORIZATION=basic(key, password),
        **headers,
    )


def detail(response) -> str:
    assert response["Content-Type"] == "application/problem+json"
    return json.loads(response.content)["detail"]


def refusal_reasons(key) -> list[str]:
    usage.flush()
    events = AuditEvent.objects.filter(key=key, action=AuditEvent.Action.USE_DENIED)
    return [event.details["reason"] for event in events.order_by("seq")]


@pytest.fixture
def risks_key(alice, make_key):
    return make_key(alice, name="Risk feed", apis=("risks",))


# --- who may ask ---------------------------------------------------------------------------


def test_a_valid_key_passes_with_its_identity_for_the_upstream(client, risks_key):
    key, password = risks_key
    response = nginx(client, "/api/v1/risks/R-1?page=2", key.identifier, password)
    assert response.status_code == 200
    assert response["X-Key-Identifier"] == key.identifier
    assert response["X-Key-Name"] == "Risk feed"
    assert response["X-Key-Owner"] == "alice"
    assert response["X-Key-Api"] == "risks"
    assert response["X-Key-Access"] == "write"
    assert response["Cache-Control"] == "no-store"
    # plain str values: runserver's wsgiref answers 500 to a header value of a str subclass
    for name in ("X-Key-Identifier", "X-Key-Name", "X-Key-Owner", "X-Key-Api", "X-Key-Access"):
        assert type(response[name]) is str, name


def test_an_address_that_is_not_a_trusted_proxy_gets_404(client, risks_key):
    key, password = risks_key
    response = client.get(
        "/gateway/verify",
        REMOTE_ADDR="198.51.100.9",
        HTTP_X_ORIGINAL_URI="/api/v1/risks/",
        HTTP_AUTHORIZATION=basic(key.identifier, password),
    )
    assert response.status_code == 404
    assert "X-Key-Identifier" not in response


def test_without_trusted_proxies_nobody_is_answered(client, settings, risks_key):
    settings.KEYS_TRUSTED_PROXIES = []
    key, password = risks_key
    assert nginx(client, "/api/v1/risks/", key.identifier, password).status_code == 404


def test_every_method_is_asked_without_csrf(risks_key):
    from django.test import Client

    key, password = risks_key
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(
        "/gateway/verify",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=CLIENT,
        HTTP_X_ORIGINAL_METHOD="POST",
        HTTP_X_ORIGINAL_URI="/api/v1/risks/",
        HTTP_AUTHORIZATION=basic(key.identifier, password),
    )
    assert response.status_code == 200


# --- the three dialects ----------------------------------------------------------------------


def test_traefik_and_caddy_headers(client, risks_key):
    key, password = risks_key
    assert traefik(client, "/api/v1/risks/", key.identifier, password).status_code == 200
    refused = traefik(client, "/api/v1/controls/", key.identifier, password)
    assert refused.status_code == 403


def test_envoy_path_style_with_the_original_method(client, risks_key):
    key, password = risks_key
    response = envoy(client, "/api/v1/risks/R-1", key.identifier, password)
    assert response.status_code == 200
    assert response["X-Key-Api"] == "risks"
    assert envoy(client, "/api/v1/events/", key.identifier, password).status_code == 403


def test_dialects_that_agree_pass(client, risks_key):
    key, password = risks_key
    response = nginx(
        client,
        "/api/v1/risks/",
        key.identifier,
        password,
        HTTP_X_FORWARDED_URI="/api/v1/risks/",
        HTTP_X_FORWARDED_METHOD="GET",
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "smuggled",
    [
        {"HTTP_X_FORWARDED_URI": "/api/v1/controls/"},
        {"HTTP_X_FORWARDED_METHOD": "DELETE"},
        {"HTTP_X_FORWARDED_HOST": "a.example.org, b.example.org"},
    ],
)
def test_a_client_sent_header_of_the_other_dialect_that_disagrees_is_refused(
    client, risks_key, smuggled
):
    key, password = risks_key
    response = nginx(client, "/api/v1/risks/", key.identifier, password, **smuggled)
    assert response.status_code == 403
    assert "two different original requests" in detail(response)
    assert "X-Key-Identifier" not in response


def test_envoy_path_and_a_disagreeing_uri_header_are_refused(client, risks_key):
    key, password = risks_key
    response = envoy(
        client, "/api/v1/risks/", key.identifier, password, HTTP_X_FORWARDED_URI="/admin/"
    )
    assert response.status_code == 403


def test_a_gateway_that_names_no_request_gets_400(client, risks_key):
    key, password = risks_key
    response = client.get(
        "/gateway/verify",
        REMOTE_ADDR=PROXY,
        HTTP_AUTHORIZATION=basic(key.identifier, password),
    )
    assert response.status_code == 400
    assert "X-Forwarded-Uri" in detail(response)


# --- the one credential check ------------------------------------------------------------------


def test_no_or_wrong_credentials_get_the_apis_401(client, risks_key):
    key, _password = risks_key
    assert_the_401(nginx(client, "/api/v1/risks/"))
    wrong = tokens.generate_password(key.identifier)
    assert_the_401(nginx(client, "/api/v1/risks/", key.identifier, wrong))


def test_a_revoked_key_is_refused_on_the_very_next_request(client, alice, risks_key):
    key, password = risks_key
    assert nginx(client, "/api/v1/risks/", key.identifier, password).status_code == 200
    actions.revoke_key(key, actor=alice, reason="done")
    assert_the_401(nginx(client, "/api/v1/risks/", key.identifier, password))
    assert refusal_reasons(key) == ["revoked"]


def test_an_expired_key_is_refused(client, risks_key):
    key, password = risks_key
    with time_machine.travel(key.expires_on + timezone.timedelta(days=2)):
        assert_the_401(nginx(client, "/api/v1/risks/", key.identifier, password))


def test_a_client_outside_the_allowlist_is_refused(client, risks_key):
    key, password = risks_key
    response = nginx(client, "/api/v1/risks/", key.identifier, password, client_ip="192.0.2.50")
    assert_the_401(response)
    assert refusal_reasons(key) == ["ip_not_allowed"]


def test_the_proxy_header_names_the_client_not_the_proxy(client, alice, make_key):
    key, password = make_key(alice, networks=("192.0.2.7",))
    ok = nginx(client, "/api/v1/risks/", key.identifier, password, client_ip="192.0.2.7")
    assert ok.status_code == 200


def test_failures_are_throttled_with_retry_after(client, settings, risks_key):
    settings.KEYS_THROTTLE_MAX_FAILURES_PER_KEY = 2
    key, _password = risks_key
    for _ in range(2):
        wrong = tokens.generate_password(key.identifier)  # well formed, checksum and all
        assert_the_401(nginx(client, "/api/v1/risks/", key.identifier, wrong))
    wrong = tokens.generate_password(key.identifier)
    response = nginx(client, "/api/v1/risks/", key.identifier, wrong)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_credentials_in_the_original_query_are_refused(client, risks_key):
    key, password = risks_key
    uri = f"/api/v1/risks/?api_key={password}"
    assert_the_401(nginx(client, uri, key.identifier, password))


# --- routes and grants -------------------------------------------------------------------------


def test_another_api_is_403_api_not_granted(client, risks_key):
    key, password = risks_key
    response = nginx(client, "/api/v1/controls/C-1", key.identifier, password)
    assert response.status_code == 403
    assert detail(response) == "This key is not granted the API it called."
    assert refusal_reasons(key) == ["api_not_granted"]


def test_a_path_no_route_serves_is_403_no_route(client, risks_key):
    key, password = risks_key
    response = nginx(client, "/internal/admin", key.identifier, password)
    assert response.status_code == 403
    assert detail(response) == "No API of the catalogue serves this path."
    assert refusal_reasons(key) == ["no_route"]


@pytest.mark.parametrize(
    "uri",
    [
        "/api/v1/risks/../controls/",
        "/api/v1/risks/%2e%2e/controls/",
        "/api/v1/risks%2F..%2Fcontrols/",
        "/api/v1/risks//x",
        "/api/v1/risks/%00",
        "/api/v1/risks/a\\b",
    ],
)
def test_a_path_read_two_ways_is_refused(client, risks_key, uri):
    key, password = risks_key
    response = nginx(client, uri, key.identifier, password)
    assert response.status_code == 403
    assert refusal_reasons(key) == ["path_not_canonical"]


def test_the_prefix_without_its_slash_belongs_to_the_api(client, risks_key):
    key, password = risks_key
    assert nginx(client, "/api/v1/risks", key.identifier, password).status_code == 200
    assert nginx(client, "/api/v1/risksx/", key.identifier, password).status_code == 403


def test_the_longest_prefix_and_a_host_route_win(client, alice, make_key):
    from keys.models import Api

    controls = Api.objects.get(slug="controls")
    ApiRoute.objects.create(api=controls, path_prefix="/api/v1/risks/controls/")
    ApiRoute.objects.create(api=controls, host="controls.example.org", path_prefix="/api/v1/")
    key, password = make_key(alice, apis=("risks",))
    assert nginx(client, "/api/v1/risks/1", key.identifier, password).status_code == 200
    # a longer prefix of another API
    assert nginx(client, "/api/v1/risks/controls/1", key.identifier, password).status_code == 403
    # a route with a host before one without
    on_host = traefik(
        client, "/api/v1/risks/1", key.identifier, password, host="Controls.Example.org"
    )
    assert on_host.status_code == 403
    assert on_host.status_code == 403
    elsewhere = traefik(client, "/api/v1/risks/1", key.identifier, password, host="x.example.org")
    assert elsewhere.status_code == 200


def test_an_edited_route_counts_on_the_next_request(client, risks_key):
    key, password = risks_key
    assert nginx(client, "/risks/1", key.identifier, password).status_code == 403
    ApiRoute.objects.create(api=key.apis.get(), path_prefix="/risks/")
    assert nginx(client, "/risks/1", key.identifier, password).status_code == 200
    ApiRoute.objects.filter(path_prefix="/risks/").delete()
    assert nginx(client, "/risks/1", key.identifier, password).status_code == 403


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_read_only_grant_reads(client, alice, make_key, method):
    key, password = make_key(alice, apis=("risks",), read_only=["risks"])
    response = nginx(client, "/api/v1/risks/", key.identifier, password, method=method)
    assert response.status_code == 200
    assert response["X-Key-Access"] == "read"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_read_only_grant_may_not_write(client, alice, make_key, method):
    key, password = make_key(alice, apis=("risks",), read_only=["risks"])
    response = nginx(client, "/api/v1/risks/R-1", key.identifier, password, method=method)
    assert response.status_code == 403
    assert detail(response) == "This key may only read this API (GET, HEAD, OPTIONS)."
    assert refusal_reasons(key) == ["method_not_granted"]
    envoy_style = envoy(client, "/api/v1/risks/", key.identifier, password, method=method.lower())
    assert envoy_style.status_code == 403


def test_a_read_and_write_grant_writes(client, risks_key):
    key, password = risks_key
    response = nginx(client, "/api/v1/risks/R-1", key.identifier, password, method="DELETE")
    assert response.status_code == 200
    assert response["X-Key-Access"] == "write"


# --- what the portal keeps ---------------------------------------------------------------------


def test_gateway_calls_count_as_uses_of_their_api(client, risks_key):
    key, password = risks_key
    for _ in range(3):
        assert nginx(client, "/api/v1/risks/", key.identifier, password).status_code == 200
    usage.flush()
    assert KeyUsageDay.objects.get(key=key).uses == 3
    assert KeyApiUse.objects.get(key=key).api.slug == "risks"


def test_the_key_page_shows_a_refused_gateway_call_with_its_path(client, alice, risks_key):
    key, password = risks_key
    nginx(client, "/api/v1/controls/C-9", key.identifier, password)
    usage.flush()
    client.force_login(alice)
    page = client.get(f"/keys/{key.identifier}/").content.decode()
    assert "/api/v1/controls/C-9" in page


def test_a_gateway_may_cache_a_yes_when_the_operator_says_so(client, settings, risks_key):
    settings.KEYS_GATEWAY_CACHE_SECONDS = 30
    key, password = risks_key
    ok = nginx(client, "/api/v1/risks/", key.identifier, password)
    assert ok["Cache-Control"] == "max-age=30"
    refused = nginx(client, "/api/v1/controls/", key.identifier, password)
    assert refused["Cache-Control"] == "no-store"


# --- the demo API honours read only too ------------------------------------------------------


def test_the_demo_api_refuses_a_write_with_a_read_only_grant(client, alice, make_key):
    key, password = make_key(alice, apis=("risks",), read_only=["risks"])
    response = client.post("/api/v1/risks/", HTTP_AUTHORIZATION=basic(key.identifier, password))
    assert response.status_code == 403
    assert detail(response) == "This key may only read this API (GET, HEAD, OPTIONS)."
    get = client.get("/api/v1/risks/", HTTP_AUTHORIZATION=basic(key.identifier, password))
    assert get.status_code == 200


# --- routes in the catalogue -------------------------------------------------------------------


def test_every_seeded_api_has_its_demo_route(db):
    from keys.seed import CATALOGUE

    routes = dict(ApiRoute.objects.values_list("path_prefix", "api__slug"))
    assert {f"/api/v1/{slug}/": slug for slug, _name, _text in CATALOGUE}.items() <= routes.items()


@pytest.mark.parametrize(
    "prefix", ["risks/", "/risks", "/a/../b/", "/a//b/", "/a b/", "/a%2f/", "/a?x/", "/a#/"]
)
def test_a_route_prefix_of_the_wrong_shape_is_refused(db, prefix):
    from keys.models import Api

    route = ApiRoute(api=Api.objects.get(slug="risks"), path_prefix=prefix)
    with pytest.raises(ValidationError):
        route.full_clean()
    with pytest.raises(ValidationError):
        route.save()


def test_two_apis_cannot_claim_the_same_host_and_prefix(db):
    from keys.models import Api

    route = ApiRoute(api=Api.objects.get(slug="controls"), path_prefix="/api/v1/risks/")
    with pytest.raises(ValidationError):
        route.full_clean()


def test_existing_grants_are_read_and_write(risks_key):
    key, _password = risks_key
    assert KeyGrant.objects.get(apikey=key).access == KeyGrant.Access.WRITE
