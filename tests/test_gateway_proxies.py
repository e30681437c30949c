"""Real nginx and real Caddy, configured with docs/gateways.md's blocks, guard a real upstream
with Key Portal keys (docs/design.md §9).

The portal runs in gunicorn (production settings) trusting 127.0.0.1, where the gateways
connect from. Clients connect from other loopback addresses: 127.0.0.2, which the keys
allow, and 127.0.0.3, which they do not; so a client calling /gateway/verify itself is not a
trusted proxy. The upstream counts its hits: a refused request must never reach it.

Servers are module-scoped: portals A and B (no answer caching) and C
(KEYS_GATEWAY_CACHE_SECONDS=2) on one database; nginx and Caddy before A, a second nginx
before B, a caching nginx before C.
"""

import base64
import http.client
import json
import sys
import time

import pytest

from keys import tokens
from tests.gateway_servers import (
    Upstream,
    caddy_executable,
    nginx_executable,
    start_caddy,
    start_nginx,
)
from tests.servers import AppServer, manage, manage_env, require

CLIENT = "127.0.0.2"  # the address the keys allow
STRANGER = "127.0.0.3"  # one they do not
CACHE_SECONDS = 2
THROTTLE_PER_KEY = 3

KEYS = {
    "valid": {},
    "read_only": {"read_only": True},
    "expired": {"expired": True},
    "revoked_nginx": {},
    "revoked_caddy": {},
    "throttled_nginx": {},
    "throttled_caddy": {},
    "two_servers": {},
    "cached": {},
}

SETUP = """
import datetime, json
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from keys import actions
from keys.models import Api

alice = get_user_model().objects.create_user("alice")
alice.groups.add(Group.objects.get(name="staff"))
risks = Api.objects.get(slug="risks")
out = {}
for name, options in json.loads(SPEC).items():
    # an expired key was made 40 days ago, to run until yesterday
    days = 40 if options.get("expired") else 0
    with time_machine.travel(timezone.now() - datetime.timedelta(days=days)):
        key, password = actions.create_key(
            owner=alice, name=name, networks=["127.0.0.2"], apis=[risks],
            expires_on=timezone.localdate() + datetime.timedelta(days=days - 1 if days else 30),
            read_only=["risks"] if options.get("read_only") else [],
        )
    out[name] = [key.identifier, password]
print(json.dumps(out))
"""

REVOKE = """
from keys import actions
from keys.models import ApiKey
key = ApiKey.objects.get(identifier=IDENTIFIER)
actions.revoke_key(key, actor=key.owner, reason="test")
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, server_database_url):
    if nginx_executable() is None:
        require("nginx is not installed (Debian package nginx)")
    if caddy_executable() is None:
        require("caddy is not installed (Debian package caddy)")
    directory = tmp_path_factory.mktemp("gateways")
    env = manage_env(
        DATABASE_URL=server_database_url,
        LOG_LEVEL="WARNING",
        WORKERS="1",
        KEYS_TRUSTED_PROXIES="127.0.0.1",
        KEYS_PROXY_HEADER="HTTP_X_FORWARDED_FOR",
        KEYS_THROTTLE_MAX_FAILURES_PER_IP="1000",
        KEYS_THROTTLE_MAX_FAILURES_PER_KEY=str(THROTTLE_PER_KEY),
    )
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    made = manage("shell", "-c", SETUP.replace("SPEC", repr(json.dumps(KEYS))), env=env)
    assert made.returncode == 0, made.stderr[-2000:]
    keys = json.loads(made.stdout.strip().splitlines()[-1])

    started = []
    upstream = Upstream().start()
    try:
        gunicorn = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "portal.wsgi"]
        portals = {}
        for name, extra in (("a", {}), ("b", {}), ("c", {"KEYS_GATEWAY_CACHE_SECONDS": "2"})):
            server = AppServer(gunicorn, {**env, **extra}, directory / f"portal-{name}.log")
            portals[name] = server.start()
            started.append(server)
        gateways = {}
        for name, portal, start in (
            ("nginx", "a", start_nginx),
            ("caddy", "a", start_caddy),
            ("nginx_b", "b", start_nginx),
        ):
            gateways[name] = start(
                directory / name, portal=portals[portal].port, upstream=upstream.port
            )
            started.append(gateways[name])
        gateways["nginx_cached"] = start_nginx(
            directory / "nginx_cached", portal=portals["c"].port, upstream=upstream.port, cache=True
        )
        started.append(gateways["nginx_cached"])
        yield {"keys": keys, "env": env, "upstream": upstream, **portals, **gateways}
    finally:
        for server in reversed(started):
            server.stop()
        upstream.stop()


def call(port, path, key=None, *, method="GET", source=CLIENT, password=None, **headers):
    """One request to 127.0.0.1:port from `source`; returns (status, headers, body)."""
    if key is not None:
        identifier, right = key
        token = base64.b64encode(f"{identifier}:{password or right}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    headers = {name.replace("_", "-"): value for name, value in headers.items()}
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def revoke(stack, name):
    identifier = stack["keys"][name][0]
    done = manage("shell", "-c", REVOKE.replace("IDENTIFIER", repr(identifier)), env=stack["env"])
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(params=["nginx", "caddy"])
def gateway(request, stack):
    return stack[request.param]


# --- through --------------------------------------------------------------------------------


def test_a_valid_key_reaches_the_upstream_with_its_identity_and_without_authorization(
    stack, gateway
):
    upstream, key = stack["upstream"], stack["keys"]["valid"]
    before = upstream.hits
    status, _headers, body = call(gateway.port, "/api/v1/risks/R-1?page=2", key)
    assert (status, body) == (200, b"upstream says hello\n")
    assert upstream.hits == before + 1
    method, path, seen = upstream.last()
    assert (method, path) == ("GET", "/api/v1/risks/R-1?page=2")
    assert "authorization" not in seen
    assert seen["x-key-identifier"] == key[0]
    assert seen["x-key-name"] == "valid"
    assert seen["x-key-owner"] == "alice"
    assert seen["x-key-api"] == "risks"
    assert seen["x-key-access"] == "write"
    assert seen["x-forwarded-for"].split(",")[-1].strip() == CLIENT


def test_a_read_only_key_reads_through_the_gateway(stack, gateway):
    status, _, _ = call(gateway.port, "/api/v1/risks/", stack["keys"]["read_only"])
    assert status == 200
    assert stack["upstream"].last()[2]["x-key-access"] == "read"


# --- refused: the upstream is never reached -------------------------------------------------


REFUSALS = {
    "no key": ({"key": None}, 401),
    "wrong password": ({"key": "valid", "password": "wrong"}, 401),
    "wrong API": ({"key": "valid", "path": "/api/v1/controls/"}, 403),
    "read only + POST": ({"key": "read_only", "method": "POST"}, 403),
    "read only + DELETE": ({"key": "read_only", "method": "DELETE"}, 403),
    "expired": ({"key": "expired"}, 401),
    "IP not allowed": ({"key": "valid", "source": STRANGER}, 401),
    "no route": ({"key": "valid", "path": "/api/not-in-the-catalogue/"}, 403),
    "dot segments": ({"key": "valid", "path": "/api/v1/risks/../controls/"}, None),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_a_refused_request_never_reaches_the_upstream(stack, gateway, case):
    options, expected = REFUSALS[case]
    options = dict(options)
    name, path = options.pop("key"), options.pop("path", "/api/v1/risks/")
    if options.get("password") == "wrong":
        options["password"] = tokens.generate_password(stack["keys"][name][0])
    key = stack["keys"][name] if name else None
    before = stack["upstream"].hits
    status, headers, _ = call(gateway.port, path, key, **options)
    if expected is None:  # nginx normalises the path first; either way it is refused
        assert status in (400, 403)
    else:
        assert status == expected
    if status == 401:
        assert headers.get("www-authenticate", "").startswith("Basic")
    assert stack["upstream"].hits == before


def test_a_revoked_key_is_refused_on_the_very_next_request(stack, gateway):
    name = f"revoked_{gateway.kind}"
    key, upstream = stack["keys"][name], stack["upstream"]
    for _ in range(3):  # the portal remembers the verified password
        assert call(gateway.port, "/api/v1/risks/", key)[0] == 200
    revoke(stack, name)
    before = upstream.hits
    assert call(gateway.port, "/api/v1/risks/", key)[0] == 401
    assert upstream.hits == before


def test_a_throttled_key_is_refused_with_429_and_never_reaches_the_upstream(stack, gateway):
    key, upstream = stack["keys"][f"throttled_{gateway.kind}"], stack["upstream"]
    before = upstream.hits
    for _ in range(THROTTLE_PER_KEY):
        wrong = tokens.generate_password(key[0])  # well formed, not its
        assert call(gateway.port, "/api/v1/risks/", key, password=wrong)[0] == 401
    status, headers, _ = call(gateway.port, "/api/v1/risks/", key)  # the right password
    assert status == 429
    assert int(headers["retry-after"]) > 0
    assert upstream.hits == before


# --- what a client sends changes nothing ----------------------------------------------------


def test_a_client_sent_identity_header_is_overwritten(stack, gateway):
    key = stack["keys"]["valid"]
    status, _, _ = call(
        gateway.port,
        "/api/v1/risks/",
        key,
        X_Key_Owner="carol",
        X_Key_Api="controls",
        X_Key_Access="write",
        X_Key_Identifier="ckid_forged",
    )
    assert status == 200
    seen = stack["upstream"].last()[2]
    assert seen["x-key-owner"] == "alice"
    assert seen["x-key-api"] == "risks"
    assert seen["x-key-identifier"] == key[0]


def test_a_client_sent_identity_header_never_reaches_the_upstream_on_a_refusal(stack, gateway):
    before = stack["upstream"].hits
    status, _, _ = call(gateway.port, "/api/v1/risks/", X_Key_Owner="alice")
    assert status == 401
    assert stack["upstream"].hits == before


@pytest.mark.parametrize("header", ["X-Forwarded-Uri", "X-Original-URI"])
def test_a_client_sent_original_uri_changes_nothing(stack, gateway, header):
    key, upstream = stack["keys"]["valid"], stack["upstream"]
    # asking for another API while naming this key's: still refused, never forwarded
    before = upstream.hits
    smuggled = {header.replace("-", "_"): "/api/v1/risks/"}
    assert call(gateway.port, "/api/v1/controls/", key, **smuggled)[0] == 403
    assert upstream.hits == before
    # asking for this key's API while naming another: still the request it makes
    smuggled = {header.replace("-", "_"): "/api/v1/controls/"}
    assert call(gateway.port, "/api/v1/risks/", key, **smuggled)[0] == 200
    assert upstream.last()[2]["x-key-api"] == "risks"


def test_a_client_sent_method_header_changes_nothing(stack, gateway):
    key = stack["keys"]["read_only"]
    before = stack["upstream"].hits
    status, _, _ = call(
        gateway.port,
        "/api/v1/risks/",
        key,
        method="POST",
        X_Forwarded_Method="GET",
        X_Original_Method="GET",
    )
    assert status == 403
    assert stack["upstream"].hits == before


def test_the_check_itself_answers_no_client(stack):
    key = stack["keys"]["valid"]
    for portal in (stack["a"], stack["c"]):
        status, headers, _ = call(
            portal.port, "/gateway/verify", key, X_Original_URI="/api/v1/risks/"
        )
        assert status == 404
        assert "x-key-identifier" not in headers
    # nginx's check location is internal: not reachable from outside either
    assert call(stack["nginx"].port, "/_key_portal_check", key)[0] == 404


# --- revocation on every app server, and with nginx caching the answer ---------------------


def test_a_revocation_counts_on_the_next_request_on_every_app_server(stack):
    key = stack["keys"]["two_servers"]
    for _ in range(2):  # both portals have verified the password and remember it
        for gateway in (stack["nginx"], stack["nginx_b"]):
            assert call(gateway.port, "/api/v1/risks/", key)[0] == 200
    revoke(stack, "two_servers")
    before = stack["upstream"].hits
    assert call(stack["nginx"].port, "/api/v1/risks/", key)[0] == 401
    assert call(stack["nginx_b"].port, "/api/v1/risks/", key)[0] == 401
    assert stack["upstream"].hits == before


def test_with_a_cached_answer_nginx_asks_the_portal_once_per_cache_window(stack):
    """The guide's proxy_cache is really used: calls in quick succession each reach the
    upstream, but the portal is asked about them once (twice if a window ends between)."""
    gateway, key, portal = stack["nginx_cached"], stack["keys"]["cached"], stack["c"]
    asked, hits = portal.output().count("/gateway/verify"), stack["upstream"].hits
    for _ in range(6):
        assert call(gateway.port, "/api/v1/risks/", key)[0] == 200
    assert stack["upstream"].hits == hits + 6
    assert portal.output().count("/gateway/verify") - asked <= 2


def test_with_a_cached_answer_a_revocation_counts_within_the_cache_seconds(stack):
    """KEYS_GATEWAY_CACHE_SECONDS=2 and the guide's proxy_cache: a revoked key may pass while
    nginx holds the yes it cached, and is refused within 2 s (polled, allowing 1 s)."""
    gateway, key = stack["nginx_cached"], stack["keys"]["cached"]
    assert call(gateway.port, "/api/v1/risks/", key)[0] == 200
    revoke(stack, "cached")
    revoked_at = time.monotonic()
    statuses = []
    while time.monotonic() < revoked_at + CACHE_SECONDS + 1:
        statuses.append((call(gateway.port, "/api/v1/risks/", key)[0], time.monotonic()))
        if statuses[-1][0] != 200:
            break
        time.sleep(0.05)
    assert statuses[-1][0] == 401, f"still passing {CACHE_SECONDS + 1} s after the revocation"
    assert all(status == 200 for status, _ in statuses[:-1])
    for _ in range(3):  # and never again
        assert call(gateway.port, "/api/v1/risks/", key)[0] == 401
