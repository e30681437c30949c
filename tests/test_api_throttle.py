"""Failed API attempts are counted per client IP and per identifier; past a limit, 429."""

import datetime
import json
import time

import pytest
import redis
import time_machine

from keys import actions, tokens
from tests.api_calls import argon2_verifications, assert_the_401, call

RISKS = "/api/v1/risks/"
WINDOW = 300
START = datetime.datetime(2027, 3, 10, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def limits(settings):
    settings.KEYS_THROTTLE_WINDOW_SECONDS = WINDOW
    settings.KEYS_THROTTLE_MAX_FAILURES_PER_IP = 3
    settings.KEYS_THROTTLE_MAX_FAILURES_PER_KEY = 2


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as t:
        yield t


@pytest.fixture
def key(alice, make_key, clock):
    return make_key(alice, networks=("127.0.0.1", "127.0.0.2", "2001:db8::/48"))


def garbage(client, ip="127.0.0.1"):
    """A failure that costs the server a lookup: well-formed credentials of no key."""
    made_up = tokens.generate_identifier()
    return call(client, RISKS, made_up, tokens.generate_password(made_up), REMOTE_ADDR=ip)


def malformed(client, ip="127.0.0.1"):
    return client.get(RISKS, HTTP_AUTHORIZATION="Basic Z2FyYmFnZQ==", REMOTE_ADDR=ip)


def wrong_password(client, key, ip="127.0.0.1"):
    return call(
        client,
        RISKS,
        key[0].identifier,
        tokens.generate_password(key[0].identifier),
        REMOTE_ADDR=ip,
    )


def right_password(client, key, ip="127.0.0.1"):
    return call(client, RISKS, key[0].identifier, key[1], REMOTE_ADDR=ip)


def assert_the_429(response, retry_after: int) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == str(retry_after)
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["status"] == 429


def test_an_ip_past_its_failure_limit_gets_429_even_with_a_valid_key_and_no_argon2(client, key):
    for _ in range(3):
        assert_the_401(garbage(client))
    with argon2_verifications() as argon2:
        assert_the_429(right_password(client, key), retry_after=WINDOW)
    assert argon2.call_count == 0


def test_an_ip_one_failure_below_its_limit_is_still_served(client, key):
    for _ in range(2):
        garbage(client)
    assert right_password(client, key).status_code == 200


def test_every_401_that_costs_a_lookup_counts_against_the_ip(client, key, alice, make_key):
    other, other_password = make_key(alice, name="Other", networks=("192.0.2.1",))
    made_up = tokens.generate_identifier()
    call(client, RISKS, made_up, tokens.generate_password(made_up))  # unknown identifier
    call(client, RISKS, other.identifier, other_password)  # IP not allowed for that key
    wrong_password(client, key)  # wrong password
    assert_the_429(right_password(client, key), retry_after=WINDOW)


def test_garbage_that_fails_its_checksum_costs_nothing_and_is_not_counted(
    client, key, django_assert_num_queries
):
    with django_assert_num_queries(0):
        for _ in range(10):  # the limit is 3
            assert_the_401(malformed(client))
    assert right_password(client, key).status_code == 200


def test_asking_without_credentials_first_never_locks_a_client_out(client, key):
    # Java's Authenticator and .NET's HttpClient ask without credentials, then retry
    # with them after the 401: that first request is not a failure.
    for _ in range(10):
        assert_the_401(client.get(RISKS, REMOTE_ADDR="127.0.0.1"))
    assert right_password(client, key).status_code == 200


def test_a_403_does_not_count_as_a_failure(client, key):
    for _ in range(5):
        response = call(client, "/api/v1/findings/", key[0].identifier, key[1])
        assert response.status_code == 403
    assert right_password(client, key).status_code == 200


def test_another_ip_is_not_throttled_by_a_failing_neighbour(client, key):
    for _ in range(3):
        garbage(client, ip="127.0.0.2")
    assert right_password(client, key, ip="127.0.0.1").status_code == 200


def test_a_key_past_its_bad_password_limit_gets_429_from_every_ip_that_failed(client, key):
    wrong_password(client, key, ip="127.0.0.1")
    wrong_password(client, key, ip="127.0.0.2")
    with argon2_verifications() as argon2:
        assert_the_429(right_password(client, key, ip="127.0.0.1"), retry_after=WINDOW)
        assert_the_429(wrong_password(client, key, ip="127.0.0.2"), retry_after=WINDOW)
    assert argon2.call_count == 0


def test_a_key_past_its_bad_password_limit_gives_every_other_network_one_try(client, key):
    wrong_password(client, key, ip="127.0.0.1")
    wrong_password(client, key, ip="127.0.0.2")
    with argon2_verifications() as argon2:
        assert_the_401(wrong_password(client, key, ip="2001:db8::1"))  # its one try: spent
        assert_the_429(right_password(client, key, ip="2001:db8::1"), retry_after=WINDOW)
        assert_the_429(wrong_password(client, key, ip="2001:db8::2"), retry_after=WINDOW)
    assert argon2.call_count == 1  # the same /64: one network, one try


def test_someone_elses_failures_in_its_allowed_range_let_a_correct_password_through(
    client, alice, make_key
):
    """An integration whose password was not verified lately is not locked out for the
    window by someone else on its /24 hammering its identifier: one try, one Argon2."""
    ranged = make_key(alice, name="Ranged", networks=("192.0.2.0/24",))
    for _ in range(2):
        wrong_password(client, ranged, ip="192.0.2.66")
    assert_the_429(wrong_password(client, ranged, ip="192.0.2.66"), retry_after=WINDOW)

    with argon2_verifications() as argon2:
        assert right_password(client, ranged, ip="192.0.2.9").status_code == 200
    assert argon2.call_count == 1
    with argon2_verifications() as argon2:  # remembered from now on
        for _ in range(3):
            assert right_password(client, ranged, ip="192.0.2.9").status_code == 200
    assert argon2.call_count == 0


def test_the_one_try_comes_back_with_the_next_window(client, alice, make_key, clock):
    ranged = make_key(alice, name="Ranged", networks=("192.0.2.0/24",))
    for _ in range(2):
        wrong_password(client, ranged, ip="192.0.2.66")
    assert_the_401(wrong_password(client, ranged, ip="192.0.2.9"))  # a typo spends it
    assert_the_429(right_password(client, ranged, ip="192.0.2.9"), retry_after=WINDOW)

    clock.shift(WINDOW)
    assert right_password(client, ranged, ip="192.0.2.9").status_code == 200


def test_bad_passwords_from_ips_not_allowed_cannot_lock_a_key_out(client, key):
    for n in range(10):
        wrong_password(client, key, ip=f"192.0.2.{n}")
    assert right_password(client, key).status_code == 200


def test_the_throttle_lifts_a_window_after_the_first_failure(client, key, clock):
    garbage(client)
    clock.shift(100)
    garbage(client)
    garbage(client)
    assert_the_429(right_password(client, key), retry_after=WINDOW - 100)

    clock.move_to(START + datetime.timedelta(seconds=WINDOW - 1))
    assert_the_429(right_password(client, key), retry_after=1)

    clock.move_to(START + datetime.timedelta(seconds=WINDOW))
    assert right_password(client, key).status_code == 200


def test_ipv6_failures_count_per_64_network(client, key):
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:3"):
        garbage(client, ip=host)
    assert right_password(client, key, ip="2001:db8::99").status_code == 429
    assert right_password(client, key, ip="2001:db8:0:1::99").status_code == 200


def test_a_malformed_credential_from_a_throttled_ip_costs_no_query(
    client, key, django_assert_num_queries
):
    for _ in range(3):
        garbage(client)
    with django_assert_num_queries(0):
        assert_the_401(malformed(client))


@pytest.mark.redis
def test_made_up_identifiers_from_a_throttled_ip_cost_no_cache_entries_and_few_queries(
    client, key, django_assert_max_num_queries, redis_cache
):
    import redis

    for _ in range(3):
        garbage(client)
    server = redis.Redis(port=redis_cache.port)
    entries = server.dbsize()  # what a flood could push out of a size-bounded cache
    with django_assert_max_num_queries(1):  # one lookup a second per client network
        for _ in range(50):
            made_up = tokens.generate_identifier()
            response = call(client, RISKS, made_up, tokens.generate_password(made_up))
            assert response.status_code == 429
    assert server.dbsize() <= entries + 1
    server.close()


def test_a_throttled_known_key_is_recorded_even_after_made_up_identifiers(client, key, clock):
    from keys.models import AuditEvent

    for _ in range(3):
        garbage(client)
    made_up = tokens.generate_identifier()
    call(client, RISKS, made_up, tokens.generate_password(made_up))  # uses this second's lookup
    clock.shift(1)
    for _ in range(3):
        assert right_password(client, key).status_code == 429
    clock.shift(61)
    right_password(client, key)

    events = AuditEvent.objects.filter(key=key[0], action=AuditEvent.Action.USE_DENIED)
    assert [e.details["count"] for e in events.order_by("seq")] == [1, 3]


# --- throttles never lock out the innocent --------------------------------------------------


def test_a_verified_password_still_gets_in_while_a_neighbour_throttles_its_network(
    client, key, alice, make_key
):
    assert right_password(client, key).status_code == 200  # verified, remembered
    for _ in range(3):
        garbage(client)  # someone else behind the same address
    with argon2_verifications() as argon2:
        assert right_password(client, key).status_code == 200
    assert argon2.call_count == 0
    # A key whose password was not verified before waits, without Argon2.
    other = make_key(alice, name="Other", networks=("127.0.0.1",))
    with argon2_verifications() as argon2:
        assert_the_429(right_password(client, other), retry_after=WINDOW)
    assert argon2.call_count == 0


def test_a_verified_password_still_gets_in_while_someone_hammers_its_identifier(client, key):
    assert right_password(client, key).status_code == 200
    for _ in range(2):
        wrong_password(client, key, ip="127.0.0.2")  # an allowed address, a wrong password
    assert_the_429(wrong_password(client, key, ip="127.0.0.2"), retry_after=WINDOW)
    assert right_password(client, key).status_code == 200
    assert right_password(client, key, ip="127.0.0.2").status_code == 200


def test_a_password_verified_for_an_older_revision_waits_while_throttled(client, key):
    assert right_password(client, key).status_code == 200
    for _ in range(3):
        garbage(client)
    api_key = key[0]
    actions.edit_key(  # a new revision: the remembered verification no longer counts
        api_key,
        actor=api_key.owner,
        name="Renamed",
        expires_on=api_key.expires_on,
        networks=list(api_key.allowed_ips.values_list("network", flat=True)),
        apis=list(api_key.apis.all()),
    )
    with argon2_verifications() as argon2:
        assert_the_429(right_password(client, key), retry_after=WINDOW)
    assert argon2.call_count == 0


def test_an_integration_under_a_lasting_attack_stays_in_while_it_keeps_calling(
    client, key, clock, settings
):
    settings.KEYS_VERIFICATION_CACHE_SECONDS = 300
    assert right_password(client, key).status_code == 200
    for minute in range(1, 10):  # the identifier is hammered all along
        clock.shift(60)
        wrong_password(client, key, ip="127.0.0.2")
        wrong_password(client, key, ip="127.0.0.2")
        assert right_password(client, key).status_code == 200, f"minute {minute}"


def test_on_redis_the_throttle_lifts_when_its_window_ends(
    client, alice, make_key, settings, redis_cache
):
    # Redis counts each failure in one script that also gives the counter its expiry: the
    # window must end there too, or an address would stay locked out for good.
    settings.KEYS_THROTTLE_WINDOW_SECONDS = 1
    key = make_key(alice, networks=("127.0.0.1",))
    for _ in range(3):
        garbage(client)
    assert_the_429(right_password(client, key), retry_after=1)

    time.sleep(1.5)  # past the one-second window, on Redis's own clock

    assert right_password(client, key).status_code == 200


def test_a_redis_that_answers_reads_but_refuses_the_counting_still_throttles(
    client, alice, make_key, redis_cache
):
    # A full Redis, or a Redis user not allowed to run scripts: failures are then counted in
    # the process itself, and what it counted is read along with the shared counters.
    server = redis.Redis(port=redis_cache.port)
    server.execute_command("ACL", "SETUSER", "default", "-@scripting")
    try:
        key = make_key(alice, networks=("127.0.0.1",))
        for _ in range(3):
            assert garbage(client).status_code == 401
        refused = right_password(client, key)
    finally:
        server.execute_command("ACL", "SETUSER", "default", "+@all")
        server.close()
    assert refused.status_code == 429
