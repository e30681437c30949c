"""Log-in throttling, the same on every log-in path: failures lock the account (from every
address) and the client network (an IPv4 address, an IPv6 /64)."""

import pytest
import time_machine
from django.contrib.auth import authenticate

from portal.models import User

THROTTLED = "Too many failed log-in attempts. Try again in 15 minutes."
PORTAL, ADMIN = "/login/", "/admin/login/"
BOTH_PATHS = pytest.mark.parametrize("path", [PORTAL, ADMIN])


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_THROTTLE_MAX_FAILURES = 5
    settings.LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK = 10
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 15 * 60


@pytest.fixture
def admin_carol(carol):
    carol.is_staff = True  # adduser --role admin sets it: she may use the Django admin
    carol.save()
    return carol


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


@BOTH_PATHS
def test_a_locked_account_is_locked_from_another_address_too(admin_carol, client, path):
    for _ in range(5):
        log_in(client, "carol", ip="198.51.100.4", path=path)
    response = log_in(client, "carol", password="carol-portal-pw", ip="192.0.2.10", path=path)
    assert THROTTLED in response.content.decode()


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
