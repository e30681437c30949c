"""Log-in throttling: repeated failures for one user name from one IP lock that pair out."""

import pytest
import time_machine

THROTTLED = "Too many failed log-in attempts. Try again in 15 minutes."


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_THROTTLE_MAX_FAILURES = 5
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 15 * 60


def log_in(client, username="alice", password="wrong-guess", ip="198.51.100.4"):  # noqa: S107
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_four_failures_still_let_the_right_password_in(alice, client):
    for _ in range(4):
        assert THROTTLED not in log_in(client).content.decode()
    response = log_in(client, password="alice-portal-pw")
    assert response.status_code == 302
    assert response.url == "/keys/"


def test_the_fifth_failure_locks_the_name_from_that_ip(alice, client):
    for _ in range(4):
        log_in(client)
    response = log_in(client)
    assert response.status_code == 200
    assert THROTTLED in response.content.decode()


def test_while_locked_even_the_right_password_is_refused_without_checking_it(
    alice, client, monkeypatch
):
    for _ in range(5):
        log_in(client)
    checked = []
    monkeypatch.setattr(
        "django.contrib.auth.forms.authenticate", lambda *a, **kw: checked.append(1)
    )
    response = log_in(client, password="alice-portal-pw")
    assert response.status_code == 200
    assert THROTTLED in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert checked == []


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


def test_a_lock_from_one_ip_does_not_lock_the_user_out_elsewhere(alice, client):
    for _ in range(5):
        log_in(client, ip="198.51.100.4")
    assert log_in(client, password="alice-portal-pw", ip="192.0.2.10").status_code == 302


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


def test_user_names_differing_only_in_case_share_one_count(alice, client):
    for name in ["alice", "Alice", "ALICE", "alice", "aLiCe"]:
        response = log_in(client, username=name)
    assert THROTTLED in response.content.decode()


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
