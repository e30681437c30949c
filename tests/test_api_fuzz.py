"""Nothing a client can send makes /api/ answer 500 or HTML (property-based, hypothesis)."""

import base64
import json

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys import tokens
from tests.api_calls import basic

EXPECTED = {200, 401, 403, 404, 405, 413, 429}
PATHS = ["/api/v1/whoami", "/api/v1/risks/", "/api/v1/findings", "/api/v1/risks/R-001/"]

fuzz = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=300)
# Any Unicode but lone surrogates, which no HTTP client can send.
any_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300)


@pytest.fixture
def key(alice, make_key):
    return make_key(alice, apis=("risks",))


def mutations(text: str):
    """text with one character replaced, removed, or added, or cut short."""
    return st.one_of(
        st.integers(0, len(text) - 1).flatmap(
            lambda i: st.sampled_from(tokens.BASE62 + ":_ \x00é").map(
                lambda c: text[:i] + c + text[i + 1 :]
            )
        ),
        st.integers(0, len(text) - 1).map(lambda i: text[:i] + text[i + 1 :]),
        st.integers(0, len(text)).map(lambda i: text[:i]),
        st.text(max_size=5).map(lambda extra: text + extra),
    )


def assert_answered_properly(response) -> None:
    assert response.status_code in EXPECTED, response.status_code
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/problem+json"
        if response.content:
            assert json.loads(response.content)["status"] == response.status_code


def get(client, path, header=None, **extra):
    cache.clear()  # each example starts unthrottled, so deep paths stay reachable
    if header is not None:
        extra["HTTP_AUTHORIZATION"] = header
    return client.generic(extra.pop("method", "GET"), path, **extra)


@fuzz
@given(header=st.one_of(latin1, any_text), path=st.sampled_from(PATHS))
def test_any_authorization_header_gets_a_proper_answer(client, key, header, path):
    assert_answered_properly(get(client, path, header))


@fuzz
@given(raw=st.binary(max_size=200), scheme=st.sampled_from(["Basic ", "basic ", "BASIC "]))
def test_any_base64_payload_gets_a_proper_answer(client, key, raw, scheme):
    header = scheme + base64.b64encode(raw).decode()
    response = get(client, "/api/v1/risks/", header)
    assert_answered_properly(response)
    assert response.status_code == 401


@fuzz
@given(data=st.data())
def test_near_miss_credentials_are_refused_with_401(client, key, data):
    api_key, password = key
    credentials = f"{api_key.identifier}:{password}"
    near = data.draw(mutations(credentials).filter(lambda text: text != credentials))
    header = "Basic " + base64.b64encode(near.encode()).decode()
    response = get(client, "/api/v1/risks/", header)
    assert_answered_properly(response)
    assert response.status_code == 401


@fuzz
@given(suffix=st.one_of(latin1, any_text), method=st.sampled_from(["GET", "HEAD", "POST"]))
def test_any_path_under_api_gets_a_proper_answer(client, key, suffix, method):
    api_key, password = key
    response = get(client, "/api/v1/" + suffix, basic(api_key.identifier, password), method=method)
    assert_answered_properly(response)


@fuzz
@given(
    query=st.one_of(latin1, any_text),
    body=st.binary(max_size=500),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/x"]
    ),
)
def test_any_query_string_and_body_get_a_proper_answer(client, key, query, body, content_type):
    api_key, password = key
    response = get(
        client,
        "/api/v1/risks/",
        basic(api_key.identifier, password),
        method="POST",
        QUERY_STRING=query,
        data=body,
        content_type=content_type,
    )
    assert_answered_properly(response)
    assert password.encode() not in response.content


@fuzz
@given(
    remote_addr=st.one_of(st.ip_addresses().map(str), latin1),
    forwarded=st.one_of(st.none(), latin1, st.ip_addresses().map(str)),
    proxy_mode=st.booleans(),
)
def test_any_client_address_and_forwarded_header_get_a_proper_answer(
    client, key, settings, remote_addr, forwarded, proxy_mode
):
    settings.KEYS_TRUSTED_PROXIES = ["127.0.0.0/8", "::1", "10.0.0.0/8"] if proxy_mode else []
    api_key, password = key
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    response = get(client, "/api/v1/risks/", basic(api_key.identifier, password), **extra)
    assert_answered_properly(response)


# --- leak reports (keys/api/leaks.py): signed by a scanner, not made with a key ----------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=20,
)
matches = st.lists(
    st.fixed_dictionaries(
        {"token": any_text},
        optional={"type": json_values, "url": json_values, "source": json_values},
    ),
    max_size=5,
)


def post_report(client, body: bytes, key_identifier: str, signature: str):
    return client.generic(
        "POST",
        "/api/v1/leaks",
        body,
        content_type="application/json",
        HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER=key_identifier,
        HTTP_GITHUB_PUBLIC_KEY_SIGNATURE=signature,
    )


def assert_a_proper_report_answer(response, expected: set[int]) -> None:
    assert response.status_code in expected, response.status_code
    if response.status_code == 200:
        assert isinstance(json.loads(response.content), list)
    else:
        assert response["Content-Type"] == "application/problem+json"
        assert json.loads(response.content)["status"] == response.status_code


@fuzz
@given(
    body=st.binary(max_size=300),
    key_identifier=st.one_of(latin1, st.just("test-scanner-key-1")),
    signature=latin1,
)
def test_any_unsigned_leak_report_gets_a_401(client, key, scanner, body, key_identifier, signature):
    response = post_report(client, body, key_identifier, signature)
    assert_a_proper_report_answer(response, {401})


@fuzz
@given(
    body=st.one_of(st.binary(max_size=300), json_values.map(json.dumps), matches.map(json.dumps))
)
def test_any_signed_leak_report_gets_a_label_list_or_a_400(client, key, scanner, body):
    raw = body if isinstance(body, bytes) else body.encode()
    response = post_report(client, raw, scanner.key_identifier, scanner.sign(raw))
    assert_a_proper_report_answer(response, {200, 400})
