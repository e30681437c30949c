"""Log-in through django-allauth (docs/design.md §10): the people and pages of before, the one
throttle, no sign-up and no self-service password pages."""

import io

import pytest
from allauth.account.signals import user_logged_in
from django.core.management import call_command

from portal.models import User

THROTTLED = "Too many failed log-in attempts. Try again in 15 minutes."


def log_in(client, username, password, **extra):
    return client.post("/login/", {"username": username, "password": password, **extra})


@pytest.fixture
def allauth_log_ins():
    """Each log-in that django-allauth completed, by user name."""
    seen = []

    def receiver(sender, request, user, **kwargs):
        seen.append(user.username)

    user_logged_in.connect(receiver)
    yield seen
    user_logged_in.disconnect(receiver)


def test_local_log_in_through_allauth_works_for_existing_users(alice, client, allauth_log_ins):
    page = client.get("/login/").text
    assert 'name="username"' in page and 'name="password"' in page
    response = log_in(client, "alice", "alice-portal-pw")
    assert response.status_code == 302 and response.url == "/keys/"
    assert allauth_log_ins == ["alice"]
    assert client.get("/keys/").status_code == 200


def test_each_role_lands_on_its_home_page_or_on_next(dave, alice, client):
    assert log_in(client, "dave", "dave-portal-pw").url == "/audit/"
    client.post("/logout/")
    assert log_in(client, "alice", "alice-portal-pw", next="/profile/").url == "/profile/"


def test_a_user_made_by_adduser_logs_in(client, db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("erin-long-password-1\n"))
    call_command("adduser", "erin", "--role", "staff", "--password-stdin", stdout=io.StringIO())
    assert log_in(client, "erin", "erin-long-password-1").status_code == 302


def test_a_wrong_password_is_an_error_above_the_form(alice, client):
    response = log_in(client, "alice", "wrong")
    assert response.status_code == 200
    assert '<div class="form-errors" role="alert">' in response.text
    assert "Please enter a correct username and password" in response.text
    assert "_auth_user_id" not in client.session


def test_the_throttle_message_shows_next_to_the_form(alice, client, settings):
    settings.LOGIN_THROTTLE_MAX_FAILURES = 5
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 15 * 60
    for _ in range(5):
        log_in(client, "alice", "wrong")
    response = log_in(client, "alice", "alice-portal-pw")
    errors = response.text.split('<div class="form-errors" role="alert">')[1].split("</div>")[0]
    assert THROTTLED in errors
    assert "_auth_user_id" not in client.session


def test_sign_up_is_closed(client, db):
    page = client.get("/accounts/signup/")
    assert page.status_code == 200 and "<h1>No sign-up</h1>" in page.text
    client.post(
        "/accounts/signup/",
        {"username": "mallory", "password1": "a-long-password-42", "password2": "a-long-pw"},
    )
    assert not User.objects.filter(username="mallory").exists()
    assert "sign up" not in client.get("/login/").text.lower()


@pytest.mark.parametrize(
    "path", ["/accounts/password/reset/", "/accounts/password/change/", "/accounts/email/"]
)
def test_no_self_service_password_or_email_pages(alice, client, path):
    assert client.get(path).status_code == 404
    client.force_login(alice)
    assert client.get(path).status_code == 404


def test_the_login_page_offers_no_password_reset(client, db):
    assert "forgot" not in client.get("/login/").text.lower()


def test_allauths_own_log_in_address_leads_to_the_portals(client, db):
    response = client.get("/accounts/login/?next=/keys/")
    assert response.status_code == 302 and response.url == "/login/?next=/keys/"


def test_log_out_ends_the_session_and_only_by_post(alice, client):
    log_in(client, "alice", "alice-portal-pw")
    assert client.get("/logout/").status_code == 405
    assert "_auth_user_id" in client.session
    response = client.post("/logout/")
    assert response.status_code == 302 and response.url == "/login/"
    assert "_auth_user_id" not in client.session


def test_allauth_pages_wear_the_portals_frame(client, db):
    page = client.get("/accounts/signup/").text
    assert "/static/portal.css" in page and 'class="topbar"' in page
    assert "<title>No sign-up · Key Portal</title>" in page
