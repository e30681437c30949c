"""The second factor (docs/design.md §10), over HTTP: TOTP and recovery codes at log-in, the one
throttle on every code, the roles that must enrol, and each step in the signed history.
Passkeys, which need a browser, are in tests/test_passkeys_browser.py."""

import datetime
import logging
import re

import pytest
import time_machine

from keys.models import AuditEvent
from tests.totp import totp

THROTTLED = "Too many failed log-in attempts. Try again in"
AUTHENTICATE = "/accounts/2fa/authenticate/"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def log_in(client, username, **extra):
    return client.post(
        "/login/", {"username": username, "password": f"{username}-portal-pw"}, **extra
    )


def confirm_its_me(client, username: str) -> None:
    """Type the password again, as changing one's factors asks (allauth's re-authentication)."""
    response = client.post("/accounts/reauthenticate/", {"password": f"{username}-portal-pw"})
    assert response.status_code == 302, response


def enrol_totp(client) -> str:
    """Set up an authenticator app for the signed-in person; return the secret shown."""
    page = client.get("/accounts/2fa/totp/activate/")
    if page.status_code == 302 and page.url.startswith("/accounts/reauthenticate/"):
        confirm_its_me(client, client.session["account_authentication_methods"][0]["username"])
        page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200, page
    secret = re.search(r'id="authenticator_secret" value="([A-Z2-7]+)"', page.text).group(1)
    response = client.post("/accounts/2fa/totp/activate/", {"code": totp(secret)})
    assert response.status_code == 302, response.text
    return secret


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def events(action, **filters):
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("seq"))


@pytest.fixture
def carol_with_totp(carol, client):
    """carol (admin) with an authenticator app, signed out; yields the secret."""
    log_in(client, "carol")
    secret = enrol_totp(client)
    client.post("/logout/")
    return secret


@pytest.fixture
def later():
    """Half a minute on: a fresh TOTP code (a code is taken once)."""
    with time_machine.travel(
        datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=31), tick=True
    ):
        yield


def test_enrol_totp_then_log_in_asks_for_the_code(carol, carol_with_totp, client, later):
    before = AuditEvent.objects.filter(action="login_succeeded").count()
    response = log_in(client, "carol")
    assert response.status_code == 302 and response.url == AUTHENTICATE
    assert not signed_in(client)
    assert client.get("/keys/").status_code == 302
    # The password alone is not a log-in on the record.
    assert AuditEvent.objects.filter(action="login_succeeded").count() == before
    response = client.post(AUTHENTICATE, {"code": totp(carol_with_totp)})
    assert response.status_code == 302 and response.url == "/keys/"
    assert signed_in(client)
    (event,) = events("login_succeeded", owner=carol)[before:] or events("login_succeeded")[-1:]
    assert event.details["second_factor"] == "authenticator app"


def test_the_code_page_wears_the_portals_frame_and_labels(carol, carol_with_totp, client):
    log_in(client, "carol")
    page = client.get(AUTHENTICATE).text
    assert 'class="topbar"' in page and '<label for="id_code">' in page


def test_a_wrong_code_is_an_error_next_to_the_field(carol, carol_with_totp, client):
    log_in(client, "carol")
    response = client.post(AUTHENTICATE, {"code": wrong(totp(carol_with_totp))})
    assert response.status_code == 200
    field = response.text.split('<div class="field has-error">')[1].split("</div>")[0]
    assert 'id="id_code"' in field and "errorlist" in field
    assert not signed_in(client)


def test_wrong_codes_count_in_the_throttle_and_lock(carol, carol_with_totp, client, settings):
    settings.LOGIN_THROTTLE_MAX_FAILURES = 5
    log_in(client, "carol")
    good = totp(carol_with_totp)
    for _ in range(5):
        response = client.post(AUTHENTICATE, {"code": wrong(good)})
        assert THROTTLED not in response.text
    # Locked: even the right code is not tried, and says why.
    response = client.post(AUTHENTICATE, {"code": good})
    assert THROTTLED in response.text
    assert not signed_in(client)
    failed = events("second_factor_failed", owner=carol)
    assert [e.details["failures_in_window"] for e in failed] == [1, 2, 3, 4, 5]
    assert events("login_locked", owner=carol)
    # The same buckets as the password: the password is refused from here too.
    client.post("/logout/")
    assert THROTTLED in log_in(client, "carol").text


def test_no_code_or_secret_reaches_the_history(carol, carol_with_totp, client):
    log_in(client, "carol")
    code = wrong(totp(carol_with_totp))
    client.post(AUTHENTICATE, {"code": code})
    for event in AuditEvent.objects.all():
        text = str(event.details)
        assert carol_with_totp not in text and code not in text


def test_no_code_or_secret_reaches_the_logs(carol, client, caplog):
    caplog.set_level(logging.DEBUG)
    log_in(client, "carol")
    secret = enrol_totp(client)
    codes = client.get("/accounts/2fa/recovery-codes/").text
    client.post("/logout/")
    log_in(client, "carol")
    client.post(AUTHENTICATE, {"code": "999999"})
    assert secret not in caplog.text
    assert "999999" not in caplog.text
    for code in re.findall(r"\b[0-9a-z]{8}\b", codes.split('id="recovery_codes"')[1][:200]):
        assert code not in caplog.text


def test_recovery_codes_are_shown_once_and_each_works_once(carol, client):
    log_in(client, "carol")
    enrol_totp(client)
    shown = client.get("/accounts/2fa/recovery-codes/").text
    codes = re.search(r'<textarea[^>]*id="recovery_codes"[^>]*>([^<]*)</textarea>', shown)
    codes = codes.group(1).split()
    assert len(codes) == 10 and all(re.fullmatch(r"[0-9a-z]{8}", c) for c in codes)
    again = client.get("/accounts/2fa/recovery-codes/").text
    assert not any(code in again for code in codes)
    client.post("/logout/")

    log_in(client, "carol")
    response = client.post(AUTHENTICATE, {"code": codes[0]})
    assert response.status_code == 302 and signed_in(client)
    (used,) = events("recovery_code_used", owner=carol)
    assert used.details == {"user": "carol", "codes_left": 9}
    client.post("/logout/")

    log_in(client, "carol")
    response = client.post(AUTHENTICATE, {"code": codes[0]})
    assert response.status_code == 200 and not signed_in(client)
    assert events("second_factor_failed", owner=carol)


def test_each_factor_event_appears_in_the_history(
    carol, client, dave, later, django_capture_on_commit_callbacks
):
    log_in(client, "carol")
    # allauth tells of factor changes once their transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        enrol_totp(client)
    client.get("/accounts/2fa/recovery-codes/")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/accounts/2fa/recovery-codes/generate/").status_code == 302
        assert client.post("/accounts/2fa/totp/deactivate/").status_code == 302
    client.post("/logout/")
    client.force_login(dave)
    history = client.get("/audit/").text
    for action in [
        "Second factor added",
        "Recovery codes made",
        "Second factor removed",
    ]:
        assert f"<td>{action}</td>" in history, action
    assert "authenticator app" in history
    made = [e.details["made"] for e in events("recovery_codes_made", owner=carol)]
    assert made == ["first", "again"]
    removed = [e.details["factor"] for e in events("factor_removed", owner=carol)]
    assert removed == ["authenticator app", "recovery codes"]


def test_a_failed_code_appears_in_the_history(carol, carol_with_totp, client, dave):
    log_in(client, "carol")
    client.post(AUTHENTICATE, {"code": wrong(totp(carol_with_totp))})
    client.post("/logout/")
    client.force_login(dave)
    assert "<td>Second-factor log-in failed</td>" in client.get("/audit/").text


def test_the_django_admin_sends_a_person_with_a_factor_to_the_portals_log_in(
    carol, carol_with_totp, client
):
    carol.is_staff = True
    carol.save()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "carol", "password": "carol-portal-pw"}
    )
    assert response.status_code == 200 and "log in on the portal" in response.text
    assert not signed_in(client)


# --- MFA_REQUIRED_ROLES -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/keys/", "/keys/add/", "/all-keys/", "/users/", "/profile/", "/admin/", "/audit/"]
)
def test_an_admin_without_a_factor_reaches_only_enrolment_and_log_out(
    carol, client, settings, path
):
    settings.MFA_REQUIRED_ROLES = frozenset({"admin"})
    carol.is_staff = True
    carol.save()
    response = log_in(client, "carol")
    assert response.status_code == 302
    response = client.get(path)
    assert response.status_code == 302 and response.url == "/accounts/2fa/"
    page = client.get("/accounts/2fa/")
    assert page.status_code == 200
    assert "Your role (admin) needs a second factor" in page.text
    # Adding a factor first asks to confirm it's you: that page is reachable too.
    assert client.get("/accounts/reauthenticate/").status_code == 200
    confirm_its_me(client, "carol")
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200
    assert client.get("/accounts/2fa/webauthn/add/").status_code == 200
    assert client.get(path).status_code == 302
    assert client.get("/static/portal.css").status_code == 200
    assert client.post("/logout/").status_code == 302 and not signed_in(client)


def test_an_htmx_request_is_sent_to_enrol_as_a_whole_page(carol, client, settings):
    settings.MFA_REQUIRED_ROLES = frozenset({"admin"})
    log_in(client, "carol")
    response = client.post("/keys/add/ip-row/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"] == "/accounts/2fa/"


def test_an_admin_reaches_everything_once_enrolled(carol, client, settings):
    settings.MFA_REQUIRED_ROLES = frozenset({"admin"})
    log_in(client, "carol")
    enrol_totp(client)
    assert client.get("/all-keys/").status_code == 200


def test_the_required_roles_leave_other_roles_alone(alice, client, settings):
    settings.MFA_REQUIRED_ROLES = frozenset({"admin"})
    log_in(client, "alice")
    assert client.get("/keys/").status_code == 200


def test_set_but_empty_requires_none(carol, client, settings):
    settings.MFA_REQUIRED_ROLES = frozenset()
    log_in(client, "carol")
    assert client.get("/all-keys/").status_code == 200


def test_the_api_is_untouched_by_the_requirement(carol, client, settings, make_key):
    settings.MFA_REQUIRED_ROLES = frozenset({"admin", "auditor", "staff"})
    log_in(client, "carol")
    # No session is read there: a key's caller, not a person, is asked (401 without one).
    assert client.get("/api/v1/risks/").status_code == 401


# --- a lost phone: a superuser removes the factor in the Django admin ---------------------------


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "root-pw-123")


def test_the_django_admin_lists_factors_without_their_secret(carol, carol_with_totp, root, client):
    from allauth.mfa.models import Authenticator

    client.force_login(root)
    listing = client.get("/admin/mfa/authenticator/")
    assert listing.status_code == 200 and "carol" in listing.text
    totp_id = Authenticator.objects.get(user=carol, type="totp").pk
    page = client.get(f"/admin/mfa/authenticator/{totp_id}/change/")
    assert page.status_code == 200 and carol_with_totp not in page.text
    assert client.get("/admin/account/emailaddress/").status_code == 404


def test_removing_a_factor_in_the_django_admin_is_on_the_record(
    carol, carol_with_totp, root, client
):
    from allauth.mfa.models import Authenticator

    client.force_login(root)
    totp_id = Authenticator.objects.get(user=carol, type="totp").pk
    response = client.post(f"/admin/mfa/authenticator/{totp_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=carol).exists()  # recovery codes went too
    removed = events("factor_removed", owner=carol)
    assert [e.details["factor"] for e in removed] == ["authenticator app", "recovery codes"]
    assert {e.actor.username for e in removed} == {"root"}
    client.logout()
    assert log_in(client, "carol").url == "/keys/"  # the password alone again


def test_an_admin_role_cannot_see_anyones_factors(carol, client):
    carol.is_staff = True
    carol.save()
    client.force_login(carol)
    assert client.get("/admin/mfa/authenticator/").status_code == 403


def test_a_wrong_code_when_confirming_its_you_counts_too(carol, carol_with_totp, client, later):
    log_in(client, "carol")
    client.post(AUTHENTICATE, {"code": totp(carol_with_totp)})
    assert signed_in(client)
    response = client.post("/accounts/2fa/reauthenticate/", {"code": "000000"})
    assert response.status_code == 200
    (failed,) = events("second_factor_failed", owner=carol)
    assert failed.details["step"] == "confirming it's you"


# --- MFA_REQUIRED_ROLES from the environment ----------------------------------------------------


def test_required_roles_default_to_admin_and_auditor(monkeypatch):
    from portal.env import env_choices

    monkeypatch.delenv("MFA_REQUIRED_ROLES", raising=False)
    roles = ("admin", "auditor", "staff")
    assert env_choices("MFA_REQUIRED_ROLES", "admin,auditor", roles) == {"admin", "auditor"}
    monkeypatch.setenv("MFA_REQUIRED_ROLES", "")
    assert env_choices("MFA_REQUIRED_ROLES", "admin,auditor", roles) == set()
    monkeypatch.setenv("MFA_REQUIRED_ROLES", " staff , admin")
    assert env_choices("MFA_REQUIRED_ROLES", "admin,auditor", roles) == {"admin", "staff"}


def test_an_unknown_required_role_stops_start_up_with_its_name(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from portal.env import env_choices

    monkeypatch.setenv("MFA_REQUIRED_ROLES", "admin,admins")
    with pytest.raises(ImproperlyConfigured, match="MFA_REQUIRED_ROLES names admins"):
        env_choices("MFA_REQUIRED_ROLES", "admin,auditor", ("admin", "auditor", "staff"))
