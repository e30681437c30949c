"""The client IP of an API call (docs/design.md §4): REMOTE_ADDR, or a trusted proxy's header."""

import base64
import os
import subprocess
import sys

import pytest
from django.test import RequestFactory

from keys.lib.client_ip import client_ip
from tests.api_calls import assert_the_401, call

WHOAMI = "/api/v1/whoami"
ALLOWED = "198.51.100.7"
ELSEWHERE = "203.0.113.9"
PROXY = "10.0.0.1"

# Every header a client can send to claim another address (as in request.META).
FORGEABLE_HEADERS = [
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
    "HTTP_CLIENT_IP",
    "HTTP_TRUE_CLIENT_IP",
    "HTTP_CF_CONNECTING_IP",
    "HTTP_X_CLUSTER_CLIENT_IP",
    "HTTP_X_CLIENT_IP",
    "HTTP_FASTLY_CLIENT_IP",
    "HTTP_FORWARDED_FOR",
    "HTTP_X_FORWARDED",
]


def forged(header: str, address: str) -> str:
    return f"for={address}" if header == "HTTP_FORWARDED" else address


def ip_of(**meta) -> str | None:
    request = RequestFactory().get("/api/v1/whoami", **meta)
    if "REMOTE_ADDR" in meta and meta["REMOTE_ADDR"] is None:
        del request.META["REMOTE_ADDR"]
    return client_ip(request)


@pytest.fixture
def proxy_mode(settings):
    settings.KEYS_TRUSTED_PROXIES = [PROXY, "2001:db8:ffff::/48"]
    settings.KEYS_PROXY_HEADER = "HTTP_X_FORWARDED_FOR"


@pytest.fixture
def key(alice, make_key):
    return make_key(alice, networks=(ALLOWED, "192.0.2.0/24", "2001:db8:1::/64"))


# --- direct mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", FORGEABLE_HEADERS)
def test_direct_mode_ignores_every_forwarded_header(header):
    assert ip_of(REMOTE_ADDR=ELSEWHERE, **{header: forged(header, ALLOWED)}) == ELSEWHERE


@pytest.mark.parametrize("header", FORGEABLE_HEADERS)
def test_a_forged_header_does_not_let_a_key_in_from_elsewhere(client, key, header):
    identifier, password = key[0].identifier, key[1]
    response = call(
        client,
        WHOAMI,
        identifier,
        password,
        REMOTE_ADDR=ELSEWHERE,
        **{header: forged(header, ALLOWED)},
    )
    assert_the_401(response)


def test_direct_mode_ignores_the_header_even_from_a_private_or_loopback_peer():
    assert ip_of(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=ALLOWED) == "127.0.0.1"
    assert ip_of(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=ALLOWED) == "10.0.0.1"


def test_no_remote_addr_means_no_ip_and_the_call_is_refused(client, key):
    assert ip_of(REMOTE_ADDR=None) is None
    assert ip_of(REMOTE_ADDR="") is None
    assert ip_of(REMOTE_ADDR="not-an-ip") is None
    assert_the_401(call(client, WHOAMI, key[0].identifier, key[1], REMOTE_ADDR=""))


def test_an_ipv6_client_matches_its_range(client, key):
    identifier, password = key[0].identifier, key[1]
    inside = call(client, WHOAMI, identifier, password, REMOTE_ADDR="2001:db8:1::ffff")
    outside = call(client, WHOAMI, identifier, password, REMOTE_ADDR="2001:db8:2::1")
    assert inside.status_code == 200
    assert_the_401(outside)


def test_an_ipv4_mapped_ipv6_client_matches_its_ipv4_entry(client, key):
    assert ip_of(REMOTE_ADDR=f"::ffff:{ALLOWED}") == ALLOWED
    response = call(client, WHOAMI, key[0].identifier, key[1], REMOTE_ADDR=f"::ffff:{ALLOWED}")
    assert response.status_code == 200


def test_an_ipv4_mapped_entry_matches_the_ipv4_client(client, alice, make_key):
    mapped, password = make_key(alice, networks=("::ffff:192.0.2.77",))
    response = call(client, WHOAMI, mapped.identifier, password, REMOTE_ADDR="192.0.2.77")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("192.0.2.0", True),
        ("192.0.2.255", True),
        ("192.0.1.255", False),
        ("192.0.3.0", False),
        ("2001:db8:1::", True),
        ("2001:db8:1:0:ffff:ffff:ffff:ffff", True),
        ("2001:db8:1:1::", False),
    ],
)
def test_cidr_ranges_hold_on_both_sides_of_their_edges(client, key, address, allowed):
    response = call(client, WHOAMI, key[0].identifier, key[1], REMOTE_ADDR=address)
    assert response.status_code == (200 if allowed else 401)


# --- proxy mode -------------------------------------------------------------------------------


def test_proxy_mode_honours_the_header_set_by_a_trusted_proxy(proxy_mode, client, key):
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ALLOWED) == ALLOWED
    response = call(
        client, WHOAMI, key[0].identifier, key[1], REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ALLOWED
    )
    assert response.status_code == 200


def test_proxy_mode_takes_the_hop_the_proxy_appended_not_what_the_client_wrote(proxy_mode):
    chain = f"{ALLOWED}, 192.0.2.9, {ELSEWHERE}"
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=chain) == ELSEWHERE
    garbage = f"{ALLOWED}, not-an-ip, {ELSEWHERE}"
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=garbage) == ELSEWHERE


def test_a_forged_header_prefix_does_not_let_a_key_in_through_the_proxy(proxy_mode, client, key):
    response = call(
        client,
        WHOAMI,
        key[0].identifier,
        key[1],
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=f"{ALLOWED}, {ELSEWHERE}",
    )
    assert_the_401(response)


@pytest.mark.parametrize("header", FORGEABLE_HEADERS)
def test_proxy_mode_ignores_every_header_from_a_peer_that_is_not_a_trusted_proxy(
    proxy_mode, header
):
    assert ip_of(REMOTE_ADDR=ELSEWHERE, **{header: forged(header, ALLOWED)}) == ELSEWHERE


@pytest.mark.parametrize("header", [h for h in FORGEABLE_HEADERS if h != "HTTP_X_FORWARDED_FOR"])
def test_proxy_mode_ignores_headers_other_than_the_configured_one(proxy_mode, header):
    meta = {header: forged(header, ELSEWHERE), "HTTP_X_FORWARDED_FOR": ALLOWED}
    assert ip_of(REMOTE_ADDR=PROXY, **meta) == ALLOWED
    assert ip_of(REMOTE_ADDR=PROXY, **{header: forged(header, ALLOWED)}) is None


def test_a_trusted_proxy_without_the_header_gives_no_ip_and_a_refusal(proxy_mode, client, key):
    assert ip_of(REMOTE_ADDR=PROXY) is None
    assert_the_401(call(client, WHOAMI, key[0].identifier, key[1], REMOTE_ADDR=PROXY))


def test_proxies_may_be_listed_as_ranges_and_in_ipv6(proxy_mode):
    assert ip_of(REMOTE_ADDR="2001:db8:ffff::1", HTTP_X_FORWARDED_FOR=ALLOWED) == ALLOWED
    assert ip_of(REMOTE_ADDR="2001:db8:fffe::1", HTTP_X_FORWARDED_FOR=ALLOWED) == (
        "2001:db8:fffe::1"
    )


def test_an_ipv4_mapped_proxy_address_is_the_proxy(proxy_mode):
    assert ip_of(REMOTE_ADDR=f"::ffff:{PROXY}", HTTP_X_FORWARDED_FOR=ALLOWED) == ALLOWED


def test_proxy_mode_reads_ipv6_and_ipv4_mapped_clients_from_the_header(proxy_mode):
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="2001:db8:1::5") == "2001:db8:1::5"
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"::ffff:{ALLOWED}") == ALLOWED
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="[2001:db8:1::5]:443") == ("2001:db8:1::5")


def test_proxy_mode_with_the_rfc_7239_forwarded_header(settings):
    settings.KEYS_TRUSTED_PROXIES = [PROXY]
    settings.KEYS_PROXY_HEADER = "HTTP_FORWARDED"
    forwarded = f'for=192.0.2.1, for="[2001:db8:1::5]";proto=https, for={ALLOWED}'
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_FORWARDED=forwarded) == ALLOWED
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ELSEWHERE) is None


def test_ipware_settings_cannot_widen_what_is_trusted(settings):
    settings.IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
    settings.IPWARE_META_PROXY_COUNT = 1
    settings.IPWARE_ALGORITHM = "legacy"
    assert ip_of(REMOTE_ADDR=ELSEWHERE, HTTP_X_FORWARDED_FOR=ALLOWED) == ELSEWHERE


@pytest.mark.parametrize("last_hop", ["unknown", "_hidden", ""])
def test_a_last_hop_that_is_no_address_gives_no_ip_not_the_clients_choice(proxy_mode, last_hop):
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{ALLOWED}, {last_hop}") is None


def start_portal(**env) -> subprocess.CompletedProcess:
    """Run `manage.py check` with production settings and these environment variables."""
    environ = {**os.environ, "SECRET_KEY": "x" * 50, "DEBUG": "0", **env}
    environ["AUDIT_SIGNING_KEY"] = base64.b64encode(b"k" * 32).decode()
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "manage.py", "check"]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60)


def test_the_portal_starts_with_a_sound_proxy_set_up():
    started = start_portal(KEYS_TRUSTED_PROXIES="10.0.0.5,2001:db8::1")
    assert started.returncode == 0, started.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KEYS_TRUSTED_PROXIES": "localhost"}, "is not an IP address"),
        ({"KEYS_TRUSTED_PROXIES": "127.0.0.1/8"}, "without host bits"),
        ({"KEYS_TRUSTED_PROXIES": "10.0.0.0/33"}, "is not an IP address"),
        ({"KEYS_TRUSTED_PROXIES": "0.0.0.0/0"}, "trusts too much of the internet"),
        ({"KEYS_TRUSTED_PROXIES": "::/0"}, "trusts too much of the internet"),
        ({"KEYS_TRUSTED_PROXIES": "::ffff:0.0.0.0/96"}, "trusts too much of the internet"),
        ({"KEYS_PROXY_HEADER": "X-Forwarded-For"}, "HTTP_X_FORWARDED_FOR"),
        ({"KEYS_PROXY_HEADER": "HTTP_X_FORWARDED_FOR\n"}, "not a request.META name"),
    ],
)
def test_a_dangerous_proxy_set_up_stops_the_portal_from_starting_and_says_why(env, says):
    started = start_portal(**env)
    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr and says in started.stderr
