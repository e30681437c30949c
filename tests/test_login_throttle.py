"""Log-in throttling, the same on every log-in path, tried as an attacker would over HTTP:
failures lock an account out of one client network (an IPv4 address, an IPv6 /64) and lock a
network that guesses many names, but never lock the person out everywhere: another network,
and a browser that logged in before, still let the right password in."""

import pytest
import time_machine
from django.contrib.auth import authenticate
from django.test import Client

from keys.models import AuditEvent
from portal.models import User

THROTTLED = "Too many failed log-in attempts. Try again in 15 minutes."
PORTAL, ADMIN = "/login/", "/admin/login/"
BOTH_PATHS = pytest.mark.parametrize("path", [PORTAL, ADMIN])


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_THROTTLE_MAX_FAILURES = 5
    settings.LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK = 10
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 15 * 60
    settings.LOGIN_THROTTLE_ACCOUNT_BUDGET = 20
    settings.LOGIN_THROTTLE_MAX_FAILURES_PAST_BUDGET = 1


@pytest.fixture
def admin_carol(carol):
    carol.is_staff = True  # adduser --role admin sets it: she may use the Django admin
    carol.save()
    return carol


NETWORK_A, NETWORK_B = "198.51.100.4", "192.0.2.10"
DEVICE_COOKIE = "kp_device"


def password_of(username: str) -> str:
    return f"{username}-portal-pw"


def log_in(client, username="alice", password="wrong-guess", ip="198.51.100.4", path=PORTAL):  # noqa: S107
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def logged_in(response) -> bool:
    return response.status_code == 302


@pytest.fixture
def password_checks(monkeypatch):
    """Every portal password the backend checks, recorded (and still checked)."""
    checked = []
    real = User.check_password

    def spy(user, raw_password):
        checked.append(user.username)
        return real(user, raw_password)

    monkeypatch.setattr(User, "check_password", spy)
    return checked


def test_four_failures_still_let_the_right_password_in(alice, client):
    for _ in range(4):
        assert THROTTLED not in log_in(client).content.decode()
    response = log_in(client, password="alice-portal-pw")
    assert response.status_code == 302
    assert response.url == "/keys/"


@BOTH_PATHS
def test_the_fifth_failure_locks_the_account(admin_carol, client, path):
    for _ in range(4):
        log_in(client, "carol", path=path)
    response = log_in(client, "carol", path=path)
    assert response.status_code == 200
    assert THROTTLED in response.content.decode()


@BOTH_PATHS
def test_while_locked_even_the_right_password_is_refused_without_checking_it(
    admin_carol, client, password_checks, path
):
    for _ in range(5):
        log_in(client, "carol", path=path)
    password_checks.clear()
    response = log_in(client, "carol", password="carol-portal-pw", path=path)
    assert THROTTLED in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert password_checks == []


def test_the_admin_log_in_and_the_portal_log_in_share_one_count(admin_carol, client):
    for path in [PORTAL, ADMIN, PORTAL, ADMIN, PORTAL]:
        log_in(client, "carol", path=path)
    for path in [PORTAL, ADMIN]:
        response = log_in(client, "carol", password="carol-portal-pw", path=path)
        assert THROTTLED in response.content.decode()


def test_an_unlocked_admin_logs_in_to_the_django_admin(admin_carol, client):
    for _ in range(4):
        log_in(client, "carol", path=ADMIN)
    assert logged_in(log_in(client, "carol", password="carol-portal-pw", path=ADMIN))
    assert client.get("/admin/").status_code == 200


def test_log_in_from_code_is_throttled_too(alice, rf):
    request = rf.post(PORTAL, REMOTE_ADDR="198.51.100.4")
    for _ in range(5):
        assert authenticate(request, username="alice", password="wrong-guess") is None
    assert authenticate(request, username="alice", password="alice-portal-pw") is None


def test_the_lock_tells_the_minutes_left_and_ends_after_the_window(alice, client):
    with time_machine.travel("2030-03-01 09:00 +0000", tick=False) as traveller:
        for _ in range(5):
            log_in(client)
        traveller.shift(10 * 60 + 1)
        assert "Try again in 5 minutes." in log_in(client, password="x").content.decode()
        traveller.shift(4 * 60 + 30)
        assert "Try again in 1 minute." in log_in(client, password="x").content.decode()
        traveller.shift(60)
        # The cache entries expire by the cache's own clock; time_machine moves it too.
        response = log_in(client, password="alice-portal-pw")
        assert response.status_code == 302


def test_a_lock_on_one_name_does_not_lock_another_name_from_that_ip(alice, bob, client):
    for _ in range(5):
        log_in(client, username="alice")
    assert log_in(client, username="bob", password="bob-portal-pw").status_code == 302


def test_a_successful_log_in_starts_the_count_again(alice, client):
    for _ in range(4):
        log_in(client)
    assert log_in(client, password="alice-portal-pw").status_code == 302
    client.logout()
    for _ in range(4):
        assert THROTTLED not in log_in(client).content.decode()


def test_failures_for_unknown_names_are_throttled_the_same_way(client, db):
    for _ in range(4):
        log_in(client, username="mallory")
    assert THROTTLED in log_in(client, username="mallory").content.decode()


def test_an_unknown_name_costs_a_password_hash_like_a_known_one(alice, client, monkeypatch):
    hashed = []
    real = User.set_password
    monkeypatch.setattr(User, "set_password", lambda user, raw: hashed.append(1) or real(user, raw))
    log_in(client, username="mallory")
    assert hashed == [1]  # ModelBackend hashes for an unknown user, so timing tells nothing


def test_user_names_differing_only_in_case_share_one_count(alice, client):
    for name in ["alice", "Alice", "ALICE", "alice", "aLiCe"]:
        response = log_in(client, username=name)
    assert THROTTLED in response.content.decode()


@BOTH_PATHS
def test_random_user_names_from_one_network_are_refused_after_its_limit(
    admin_carol, client, password_checks, path
):
    for n in range(10):
        log_in(client, username=f"guess{n}", path=path)
    password_checks.clear()
    response = log_in(client, "carol", password="carol-portal-pw", path=path)
    assert THROTTLED in response.content.decode()
    assert password_checks == []
    # The same person from another network is not held back by it.
    assert logged_in(
        log_in(client, "carol", password="carol-portal-pw", ip="192.0.2.10", path=path)
    )


def test_twelve_addresses_of_one_ipv6_64_share_one_budget(alice, client):
    for n in range(1, 13):
        log_in(client, username=f"guess{n}", ip=f"2001:db8:1:2::{n:x}")
    response = log_in(client, password="alice-portal-pw", ip="2001:db8:1:2:ffff::1")
    assert THROTTLED in response.content.decode()
    assert logged_in(log_in(client, password="alice-portal-pw", ip="2001:db8:1:3::1"))


@pytest.mark.redis
def test_counts_are_shared_through_redis(alice, client):
    for _ in range(5):
        log_in(client)
    assert THROTTLED in log_in(client, password="alice-portal-pw").content.decode()


@pytest.mark.redis
def test_with_redis_down_log_in_still_checks_the_password(
    alice, client, own_redis_server, point_cache
):
    point_cache(own_redis_server.url)
    own_redis_server.stop()
    assert "Please enter a correct" in log_in(client).content.decode()
    assert log_in(client, password="alice-portal-pw").status_code == 302


# --- nobody can lock a person out --------------------------------------------------------------


@pytest.fixture
def attacker() -> Client:
    """Someone else's browser: no cookie of the person's."""
    return Client()


def person_for(path: str) -> str:
    return "carol" if path == ADMIN else "alice"


@BOTH_PATHS
def test_failures_from_one_network_leave_the_person_their_log_in_from_another(
    alice, admin_carol, client, attacker, path
):
    name = person_for(path)
    for _ in range(6):
        log_in(attacker, name, ip=NETWORK_A, path=path)

    assert logged_in(log_in(client, name, password=password_of(name), ip=NETWORK_B, path=path))
    # The attacker's network stays locked for that account, right password or not.
    response = log_in(attacker, name, password=password_of(name), ip=NETWORK_A, path=path)
    assert THROTTLED in response.content.decode()


@BOTH_PATHS
def test_a_browser_that_logged_in_before_keeps_its_own_budget_on_the_attackers_network(
    alice, admin_carol, client, attacker, path
):
    name = person_for(path)
    assert logged_in(log_in(client, name, password=password_of(name), ip=NETWORK_A, path=path))
    client.post("/logout/")
    for _ in range(6):
        log_in(attacker, name, ip=NETWORK_A, path=path)

    assert logged_in(log_in(client, name, password=password_of(name), ip=NETWORK_A, path=path))
    response = log_in(attacker, name, password=password_of(name), ip=NETWORK_A, path=path)
    assert THROTTLED in response.content.decode()


def test_a_browser_that_logged_in_before_meets_its_own_limit_too(alice, client):
    assert logged_in(log_in(client, password="alice-portal-pw"))
    client.post("/logout/")
    for _ in range(5):
        log_in(client)
    assert THROTTLED in log_in(client, password="alice-portal-pw").content.decode()
    (locked,) = AuditEvent.objects.filter(action="login_locked", owner=alice)
    assert locked.details["locked"] == "browser"
    # Its failures were its own: the same network without that browser is not locked.
    assert logged_in(log_in(Client(), password="alice-portal-pw"))


def test_the_device_cookie_is_http_only_same_site_lax_and_names_its_account(alice, bob, client):
    log_in(client, password="alice-portal-pw")
    cookie = client.cookies[DEVICE_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # this test run serves plain http (HTTPS=0)
    client.post("/logout/")
    # Alice's browser has no budget of its own for bob: a locked network stays locked.
    for _ in range(5):
        log_in(Client(), "bob")
    assert THROTTLED in log_in(client, "bob", password="bob-portal-pw").content.decode()


def test_the_device_cookie_is_secure_over_https(alice, client):
    client.post(PORTAL, {"username": "alice", "password": "alice-portal-pw"}, secure=True)
    assert client.cookies[DEVICE_COOKIE]["secure"]


def test_a_forged_device_cookie_gives_no_budget(alice, client, attacker):
    log_in(client, password="alice-portal-pw")
    genuine = client.cookies[DEVICE_COOKIE].value
    for _ in range(5):
        log_in(attacker)
    attacker.cookies[DEVICE_COOKIE] = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB")
    assert THROTTLED in log_in(attacker, password="alice-portal-pw").content.decode()


def test_past_the_accounts_budget_each_new_network_gets_one_try(
    settings, alice, client, password_checks
):
    settings.LOGIN_THROTTLE_ACCOUNT_BUDGET = 8
    for n in range(8):  # two guesses each from four networks: under each network's limit
        log_in(Client(), ip=f"203.0.113.{n // 2 + 1}")

    # The person is not locked out: a network that has not failed yet lets her in at once.
    assert logged_in(log_in(client, password="alice-portal-pw", ip=NETWORK_B))
    # But guessing is slower: a new network gets one guess checked, not five.
    guesser = Client()
    password_checks.clear()
    log_in(guesser, ip="203.0.113.50")
    response = log_in(guesser, password="alice-portal-pw", ip="203.0.113.50")
    assert THROTTLED in response.content.decode()
    assert password_checks == ["alice"]
    # The networks that guessed before already spent more than that.
    response = log_in(Client(), password="alice-portal-pw", ip="203.0.113.1")
    assert THROTTLED in response.content.decode()


def test_the_next_log_in_tells_how_many_wrong_passwords_were_tried_since_the_last(
    alice, client, attacker
):
    for _ in range(7):  # the last two are refused unchecked: no password was tried
        log_in(attacker, ip=NETWORK_A)

    response = client.post(
        PORTAL,
        {"username": "alice", "password": "alice-portal-pw"},
        REMOTE_ADDR=NETWORK_B,
        follow=True,
    )
    assert "5 wrong passwords were tried on your account since your last log-in." in (
        response.content.decode()
    )
    (event,) = AuditEvent.objects.filter(action="login_succeeded", owner=alice)
    assert event.details["wrong_passwords_since_last_log_in"] == 5

    client.post("/logout/")
    response = client.post(
        PORTAL,
        {"username": "alice", "password": "alice-portal-pw"},
        REMOTE_ADDR=NETWORK_B,
        follow=True,
    )
    assert "since your last log-in" not in response.content.decode()


def test_the_admin_hears_of_wrong_passwords_in_the_django_admin(admin_carol, client, attacker):
    log_in(attacker, "carol", path=ADMIN)
    response = client.post(
        ADMIN,
        {"username": "carol", "password": "carol-portal-pw"},
        REMOTE_ADDR=NETWORK_B,
        follow=True,
    )
    assert "1 wrong password was tried on your account since your last log-in." in (
        response.content.decode()
    )
