"""The one authentication path of /api/v1/ (docs/design.md §4): answers, order, the cache."""

import datetime
import json
import logging
import zoneinfo

import pytest
import time_machine
from argon2 import PasswordHasher, Type
from django.test import Client

from keys import actions, tokens
from keys.api import check as auth
from keys.models import Api, ApiKey
from tests.api_calls import argon2_verifications, assert_the_401, basic, call

TZ = zoneinfo.ZoneInfo("Europe/Amsterdam")
RISKS = "/api/v1/risks/"
WHOAMI = "/api/v1/whoami"


@pytest.fixture
def alices_key(alice, make_key):
    return make_key(alice, apis=("risks", "controls"), networks=("127.0.0.1", "2001:db8::/64"))


def edit(key, **changes):
    key.refresh_from_db()
    current = {
        "name": key.name,
        "expires_on": key.expires_on,
        "networks": list(key.allowed_ips.values_list("network", flat=True)),
        "apis": list(key.apis.all()),
    }
    return actions.edit_key(key, actor=key.owner, **{**current, **changes})


# --- happy path --------------------------------------------------------------------------


def test_a_key_created_in_the_browser_works_with_basic_auth(alice, login, today):
    browser = login(alice)
    response = browser.post(
        "/keys/add/",
        {
            "name": "Reporting job",
            "expires_on": (today + datetime.timedelta(days=30)).isoformat(),
            "allowed_ips": ["127.0.0.1"],
            "apis": [Api.objects.get(slug="risks").pk],
        },
    )
    assert response.status_code == 200
    identifier, password = response.context["key"].identifier, response.context["password"]

    answer = call(Client(), RISKS, identifier, password)

    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/json"
    assert [item["id"] for item in answer.json()["items"]] == ["R-001", "R-002", "R-003"]


def test_whoami_answers_any_valid_key_with_its_identifier_name_apis_and_expiry(client, alices_key):
    key, password = alices_key

    response = call(client, WHOAMI, key.identifier, password)

    assert response.status_code == 200
    assert response.json() == {
        "identifier": key.identifier,
        "name": "CI pipeline",
        "apis": ["controls", "risks"],
        "expires_on": key.expires_on.isoformat(),
    }


def test_an_item_of_a_granted_api_is_served_and_an_unknown_item_is_a_404_problem(
    client, alices_key
):
    key, password = alices_key

    found = call(client, "/api/v1/risks/R-002/", key.identifier, password)
    missing = call(client, "/api/v1/risks/R-999/", key.identifier, password)

    assert found.json()["item"]["title"] == "Data centre outage"
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/problem+json"


def test_authenticated_answers_are_never_stored_by_caches(client, alices_key):
    key, password = alices_key
    assert call(client, RISKS, key.identifier, password)["Cache-Control"] == "no-store"


# --- one identical 401 before the password is verified ------------------------------------


def test_missing_credentials_get_the_401(client, alices_key):
    assert_the_401(client.get(RISKS))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        "Basic  " + basic("a", "b").split()[1],  # two spaces
        basic("a", "b") + " ",  # trailing space
        "Basic " + "QQ" * 200,  # too long to be worth decoding
        "Basic " + "//79/w==",  # not UTF-8
        "Basic " + "bm8tY29sb24=",  # "no-colon"
    ],
)
def test_malformed_basic_headers_get_the_401(client, alices_key, header):
    assert_the_401(client.get(RISKS, HTTP_AUTHORIZATION=header))


def test_a_mistyped_identifier_or_password_is_refused_by_its_checksum_without_a_query(
    client, alices_key, django_assert_num_queries
):
    key, password = alices_key
    typo = password[:-1] + ("A" if password[-1] != "A" else "B")
    with django_assert_num_queries(0):
        assert_the_401(call(client, RISKS, key.identifier, typo))
        assert_the_401(call(client, RISKS, key.identifier.upper(), password))


def test_an_unknown_identifier_gets_the_401(client, alices_key):
    made_up = tokens.generate_identifier()
    assert_the_401(call(client, RISKS, made_up, tokens.generate_password(made_up)))


def test_a_wrong_password_gets_the_401(client, alices_key):
    key, _password = alices_key
    assert_the_401(call(client, RISKS, key.identifier, tokens.generate_password(key.identifier)))


def test_revoked_key_gets_the_same_401_as_an_unknown_one(client, alice, alices_key):
    key, password = alices_key
    actions.revoke_key(key, actor=alice)
    assert_the_401(call(client, RISKS, key.identifier, password))


def test_a_key_from_an_ip_not_allowed_gets_the_401_without_argon2(client, alices_key):
    key, password = alices_key
    with argon2_verifications() as argon2:
        assert_the_401(call(client, RISKS, key.identifier, password, REMOTE_ADDR="192.0.2.1"))
    assert argon2.call_count == 0


def test_a_key_of_a_deactivated_owner_gets_the_401(client, alice, alices_key):
    key, password = alices_key
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)  # bypassing the action
    assert_the_401(call(client, RISKS, key.identifier, password))


# --- expiry, on both sides of the boundary ------------------------------------------------


def test_a_key_works_through_the_last_second_of_its_expiration_date(client, alice, make_key, today):
    key, password = make_key(alice, expires_on=today + datetime.timedelta(1))
    last_second = datetime.datetime.combine(key.expires_on, datetime.time(23, 59, 59), TZ)
    with time_machine.travel(last_second, tick=False):
        assert call(client, RISKS, key.identifier, password).status_code == 200


def test_a_key_is_refused_from_the_first_second_after_its_expiration_date(
    client, alice, make_key, today
):
    key, password = make_key(alice, expires_on=today + datetime.timedelta(1))
    call(client, RISKS, key.identifier, password)  # the verification is cached, still refused
    next_day = datetime.datetime.combine(
        key.expires_on + datetime.timedelta(1), datetime.time(0, 0, 0), TZ
    )
    with time_machine.travel(next_day, tick=False):
        assert_the_401(call(client, RISKS, key.identifier, password))


# --- 403 only after the password ----------------------------------------------------------


def test_a_verified_key_lacking_the_api_gets_403(client, alices_key):
    key, password = alices_key
    response = call(client, "/api/v1/findings/", key.identifier, password)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert "WWW-Authenticate" not in response


def test_a_wrong_password_for_an_api_not_granted_gets_401_not_403(client, alices_key):
    key, _password = alices_key
    wrong = tokens.generate_password(key.identifier)
    assert_the_401(call(client, "/api/v1/findings/", key.identifier, wrong))


def test_a_refused_call_is_sent_to_the_keys_page_for_why_and_not_told_which_check_failed(
    client, alices_key
):
    key, password = alices_key
    outside = call(client, RISKS, key.identifier, password, REMOTE_ADDR="192.0.2.1")
    wrong = call(client, RISKS, key.identifier, tokens.generate_password(key.identifier))
    unknown = call(client, RISKS, tokens.generate_identifier(), password)
    for response in (outside, wrong, unknown):
        assert_the_401(response)
    detail = outside.json()["detail"]
    assert "See the key's page in the portal for why this call was refused." in detail
    assert wrong.content == outside.content == unknown.content


def test_an_allowed_key_from_an_ip_not_allowed_for_an_api_not_granted_gets_401(client, alices_key):
    key, password = alices_key
    assert_the_401(
        call(client, "/api/v1/findings/", key.identifier, password, REMOTE_ADDR="192.0.2.1")
    )


# --- changes count on the very next request -----------------------------------------------


def test_revocation_counts_on_the_next_request_although_the_verification_is_cached(
    client, alice, alices_key
):
    key, password = alices_key
    assert call(client, RISKS, key.identifier, password).status_code == 200
    actions.revoke_key(key, actor=alice)
    assert_the_401(call(client, RISKS, key.identifier, password))


def test_removing_an_api_counts_on_the_next_request(client, alices_key):
    key, password = alices_key
    assert call(client, "/api/v1/controls/", key.identifier, password).status_code == 200
    edit(key, apis=[Api.objects.get(slug="risks")])
    assert call(client, "/api/v1/controls/", key.identifier, password).status_code == 403


def test_removing_an_allowed_ip_counts_on_the_next_request(client, alices_key):
    key, password = alices_key
    assert call(client, RISKS, key.identifier, password).status_code == 200
    edit(key, networks=["192.0.2.0/24"])
    assert_the_401(call(client, RISKS, key.identifier, password))


# --- Argon2 without the cost ----------------------------------------------------------------


def test_a_second_call_with_the_same_credentials_needs_no_argon2(client, alices_key):
    key, password = alices_key
    call(client, RISKS, key.identifier, password)
    with argon2_verifications() as argon2:
        assert call(client, RISKS, key.identifier, password).status_code == 200
    assert argon2.call_count == 0


def test_an_edit_makes_the_next_call_verify_the_password_again(client, alices_key):
    key, password = alices_key
    call(client, RISKS, key.identifier, password)
    edit(key, name="Renamed")
    with argon2_verifications() as argon2:
        assert call(client, RISKS, key.identifier, password).status_code == 200
    assert argon2.call_count == 1


def test_a_wrong_password_is_never_remembered(client, alices_key):
    key, _password = alices_key
    wrong = tokens.generate_password(key.identifier)
    call(client, RISKS, key.identifier, wrong)
    with argon2_verifications() as argon2:
        assert_the_401(call(client, RISKS, key.identifier, wrong))
    assert argon2.call_count == 1


@pytest.mark.redis
def test_the_cache_holds_neither_the_password_nor_a_decision(client, alices_key, redis_cache):
    import redis

    key, password = alices_key
    assert call(client, RISKS, key.identifier, password).status_code == 200
    dump = redis.Redis(port=redis_cache.port)  # what someone with a copy of Redis reads
    stored = b"".join(name + (dump.dump(name) or b"") for name in dump.scan_iter())
    dump.close()
    assert stored, "the verification should be remembered in Redis"
    assert password.encode() not in stored
    assert password[25:45].encode() not in stored  # not even its secret part
    assert b"allowed" not in stored and b"granted" not in stored and b"200" not in stored


@pytest.fixture
def cache_down(settings):
    """A real outage: Django's Redis cache pointed at a port where nothing listens."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }


def test_a_cache_outage_never_fails_open(client, alices_key, cache_down):
    key, password = alices_key
    with argon2_verifications() as argon2:
        assert call(client, RISKS, key.identifier, password).status_code == 200
        assert_the_401(
            call(client, RISKS, key.identifier, tokens.generate_password(key.identifier))
        )
    assert argon2.call_count == 2


def test_with_the_cache_down_each_process_still_throttles_wrong_passwords(
    client, alices_key, cache_down, settings
):
    settings.KEYS_THROTTLE_MAX_FAILURES_PER_KEY = 5
    key, _password = alices_key
    wrong = tokens.generate_password(key.identifier)
    statuses = [call(client, RISKS, key.identifier, wrong).status_code for _ in range(30)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    with argon2_verifications() as argon2:
        assert call(client, RISKS, key.identifier, wrong).status_code == 429
    assert argon2.call_count == 0


def test_a_hash_with_old_parameters_is_upgraded_on_its_next_verification(client, alices_key):
    key, password = alices_key
    old = PasswordHasher(time_cost=1, memory_cost=4096, parallelism=1, type=Type.ID)
    ApiKey.objects.filter(pk=key.pk).update(password_hash=old.hash(password))
    assert tokens.needs_rehash(ApiKey.objects.get(pk=key.pk).password_hash)

    assert call(client, RISKS, key.identifier, password).status_code == 200

    upgraded = ApiKey.objects.get(pk=key.pk).password_hash
    assert not tokens.needs_rehash(upgraded)
    assert tokens.verify_password(upgraded, password)


def test_verifications_beyond_the_per_process_cap_get_503_with_retry_after(
    client, settings, alices_key, monkeypatch
):
    settings.KEYS_MAX_CONCURRENT_VERIFICATIONS = 1
    key, password = alices_key
    verify = tokens.verify_password
    meanwhile = []

    def slow_verify(stored_hash, candidate):
        if not meanwhile:  # another request arrives while this one holds the only slot
            meanwhile.append(call(Client(), RISKS, key.identifier, password))
        return verify(stored_hash, candidate)

    monkeypatch.setattr(tokens, "verify_password", slow_verify)
    assert call(client, RISKS, key.identifier, password).status_code == 200
    response = meanwhile[0]
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response["Content-Type"] == "application/problem+json"


# --- credentials only in the Authorization header -------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "password={password}",
        "identifier={identifier}",
        "api_key={identifier}:{password}",
        "q={password}",
        "q=%63kpw_anything",
        "Token=x",
    ],
)
def test_credentials_in_the_query_string_are_refused_and_never_echoed(client, alices_key, query):
    key, password = alices_key
    path = RISKS + "?" + query.format(identifier=key.identifier, password=password)
    response = call(client, path, key.identifier, password)
    assert_the_401(response)
    assert password.encode() not in response.content


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("password={password}", "application/x-www-form-urlencoded"),
        ('{{"identifier": "{identifier}", "password": "{password}"}}', "application/json"),
        ('{{"apiKey": "x"}}', "application/json"),
        ("{password}", "text/plain"),
    ],
)
def test_credentials_in_the_body_are_refused(client, alices_key, body, content_type):
    key, password = alices_key
    response = client.generic(
        "GET",
        RISKS,
        body.format(identifier=key.identifier, password=password),
        content_type=content_type,
        HTTP_AUTHORIZATION=basic(key.identifier, password),
    )
    assert_the_401(response)


def test_a_body_nested_past_the_json_parsers_depth_is_answered_not_a_500(client, alices_key):
    key, password = alices_key
    response = client.generic(
        "GET",
        RISKS,
        "[" * 30_000 + "]" * 30_000,
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(key.identifier, password),
    )
    assert response.status_code == 200


def test_a_harmless_query_string_is_fine(client, alices_key):
    key, password = alices_key
    assert call(client, RISKS + "?page=2", key.identifier, password).status_code == 200


def test_a_huge_body_is_refused_without_being_read(client, alices_key):
    key, password = alices_key
    response = client.generic(
        "GET",
        RISKS,
        "x" * (auth.MAX_INSPECTED_BODY + 1),
        content_type="text/plain",
        HTTP_AUTHORIZATION=basic(key.identifier, password),
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"


def test_a_portal_session_does_not_authenticate_the_api(alice, login):
    assert_the_401(login(alice).get(WHOAMI))


def test_a_session_cookie_alongside_a_key_is_ignored_and_no_session_is_touched(
    alice, login, alices_key
):
    key, password = alices_key
    browser = login(alice)
    response = call(browser, WHOAMI, key.identifier, password)
    assert response.status_code == 200
    assert "Set-Cookie" not in response
    assert "Cookie" not in response.get("Vary", "")


def test_csrf_does_not_apply_to_the_api(alices_key):
    key, password = alices_key
    strict = Client(enforce_csrf_checks=True)
    response = call(strict, RISKS, key.identifier, password, method="post")
    assert response.status_code == 405  # authenticated, then the method: never a CSRF 403
    assert response["Allow"] == "GET, HEAD"
    assert_the_401(call(strict, RISKS, method="post"))


# --- secrets stay secret ----------------------------------------------------------------------


def test_the_password_is_never_logged(client, alices_key, caplog):
    key, password = alices_key
    caplog.set_level(logging.DEBUG)
    call(client, RISKS, key.identifier, password)
    call(client, RISKS, key.identifier, password, REMOTE_ADDR="192.0.2.1")
    call(client, "/api/v1/findings/", key.identifier, password)
    call(client, "/api/v1/nowhere", key.identifier, password)
    call(client, RISKS + "?password=" + password, key.identifier, password)
    assert password not in caplog.text
    assert password[5:30] not in caplog.text


def test_refusal_bodies_are_problem_documents(client, alices_key):
    key, password = alices_key
    bodies = [
        call(client, RISKS).content,
        call(client, "/api/v1/findings/", key.identifier, password).content,
        call(client, "/api/v1/nowhere/").content,
    ]
    for body in bodies:
        document = json.loads(body)
        assert {"type", "title", "status"} <= set(document)


def test_a_stored_hash_that_cannot_be_parsed_is_an_error_not_the_callers_wrong_password(
    client, alice, make_key, settings, caplog
):
    from keys.models import AuditEvent

    settings.KEYS_THROTTLE_MAX_FAILURES_PER_KEY = 2
    key, password = make_key(alice)
    ApiKey.objects.filter(pk=key.pk).update(password_hash="$argon2id$garbage")
    for _ in range(4):
        assert_the_401(call(client, RISKS, key.identifier, password))
    assert f"API key #{key.pk}: its stored password hash cannot be parsed" in caplog.text
    denied = AuditEvent.objects.get(key=key, action="use_denied")
    assert denied.details["reason"] == "stored_hash_unusable"
    # Never counted as the caller's failures: four tries, a limit of two, no 429.
