"""Confirm it's you (docs/design.md §10): past REAUTH_SECONDS since the person last proved who
they are, every protected act first asks for their password, and then goes on with what they
had typed. Time moves with time_machine; everything goes through the Django test client.
"""

import datetime
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from keys.lib import reauth
from keys.models import Api, ApiKey, AuditEvent, KeyPolicy, StreamDestination, local_date

START = datetime.datetime(2030, 3, 4, 9, 0, tzinfo=datetime.UTC)
CONFIRM = "/confirm/"


@pytest.fixture(autouse=True)
def start(time_machine):
    time_machine.move_to(START, tick=False)


def after(time_machine, seconds: int) -> None:
    time_machine.move_to(START + datetime.timedelta(seconds=seconds), tick=False)


@pytest.fixture
def stale(time_machine):
    """Call after logging in: moves time just past the window."""
    return lambda: after(time_machine, settings.REAUTH_SECONDS)


def asked_to_confirm(response) -> str:
    """Assert the answer sends the person to confirm; return where it goes back to."""
    assert response.status_code == 302, response.status_code
    url = urlsplit(response["Location"])
    assert url.path == CONFIRM
    return parse_qs(url.query)["next"][0]


def password_entry(password: str, back: str) -> dict:
    """What the confirmation page's password form sends."""
    return {"method": "password", "password-password": password, "next": back}


def confirm(client, user, back: str):
    response = client.post(CONFIRM, password_entry(f"{user.username}-portal-pw", back))
    assert response.status_code == 302, response.text
    assert response["Location"] == back
    return client.get(back)


@pytest.fixture
def carol(carol):
    """The admin, with access to the Django admin (adduser --role admin sets is_staff)."""
    carol.is_staff = True
    carol.save()
    return carol


@pytest.fixture
def key(alice, make_key):
    return make_key(alice, name="Pipeline")[0]


def add_form(today) -> dict:
    risks, kris = Api.objects.get(slug="risks"), Api.objects.get(slug="kris")
    return {
        "csrfmiddlewaretoken": "a-token-that-must-not-be-kept",
        "name": "Reporting job",
        "description": "Nightly risk report",
        "expires_on": (today + datetime.timedelta(days=30)).isoformat(),
        "allowed_ips": ["192.0.2.10", "198.51.100.0/24"],
        "apis": [str(risks.pk), str(kris.pk)],
        f"access-{kris.slug}": "read",
        f"access-{risks.slug}": "write",
    }


# --- each protected act, after the window: not done until confirmed, then with what was typed


def test_adding_a_key_waits_for_the_confirmation_and_keeps_what_was_typed(
    alice, login, stale, today
):
    client = login(alice)
    stale()
    form = add_form(today)

    back = asked_to_confirm(client.post("/keys/add/", form))

    assert not ApiKey.objects.exists()
    held = list(client.session[reauth.PENDING].values())
    assert len(held) == 1 and "csrfmiddlewaretoken" not in held[0]["fields"]
    page = confirm(client, alice, back)
    assert page.status_code == 200
    assert not ApiKey.objects.exists()  # nothing is done behind the person's back
    restored = page.context["form"]
    assert restored["name"].value() == "Reporting job"
    assert restored["description"].value() == "Nightly risk report"
    assert str(restored["expires_on"].value()) == form["expires_on"]
    assert restored["allowed_ips"].value() == ["192.0.2.10", "198.51.100.0/24"]
    assert sorted(restored["apis"].value()) == sorted(form["apis"])
    assert 'value="Reporting job"' in page.text and 'value="198.51.100.0/24"' in page.text
    assert "check it, then send it again" in page.text

    # Sent again as the restored page sends it: the key is made with all of it.
    sent = client.post("/keys/add/", {**restored.data.dict(), **_lists(restored.data)})
    assert sent.status_code == 200 and "password" in sent.context
    made = ApiKey.objects.get()
    assert made.name == "Reporting job" and made.description == "Nightly risk report"
    assert made.expires_on.isoformat() == form["expires_on"]
    assert sorted(str(e) for e in made.allowed_ips.all()) == ["192.0.2.10", "198.51.100.0/24"]
    assert made.read_only_slugs() == ["kris"]
    assert sorted(made.apis.values_list("slug", flat=True)) == ["kris", "risks"]


def _lists(data) -> dict:
    return {name: data.getlist(name) for name in data}


def test_what_was_held_comes_back_once_and_only_on_its_own_page(alice, login, stale, today):
    client = login(alice)
    stale()
    back = asked_to_confirm(client.post("/keys/add/", add_form(today)))
    held = parse_qs(urlsplit(back).query)["resume"][0]
    client.post(CONFIRM, password_entry("alice-portal-pw", back))

    elsewhere = client.get(f"/users/bob/deactivate/?resume={held}")  # not Alice's page anyway
    assert elsewhere.status_code == 403
    first = client.get(back)
    again = client.get(back)

    assert first.context["form"]["name"].value() == "Reporting job"
    assert not again.context["form"].is_bound


def test_regenerating_waits_for_the_confirmation_and_keeps_the_overlap(alice, login, stale, key):
    client = login(alice)
    stale()
    url = f"/keys/{key.identifier}/regenerate/"

    back = asked_to_confirm(client.post(url, {"overlap": "1 hour"}))

    assert not AuditEvent.objects.filter(action="password_regenerated").exists()
    page = confirm(client, alice, back)
    assert page.context["form"]["overlap"].value() == "1 hour"
    done = client.post(url, page.context["form"].data.dict())
    assert done.status_code == 200 and done.context["regenerated"]
    assert AuditEvent.objects.filter(action="password_regenerated").count() == 1


def test_renewing_waits_for_the_confirmation_and_keeps_the_date_and_overlap(
    alice, login, stale, key
):
    client = login(alice)
    stale()
    url = f"/keys/{key.identifier}/renew/"
    expires_on = (local_date() + datetime.timedelta(days=200)).isoformat()

    back = asked_to_confirm(client.post(url, {"expires_on": expires_on, "overlap_days": "3"}))

    assert ApiKey.objects.count() == 1
    page = confirm(client, alice, back)
    form = page.context["form"]
    assert str(form["expires_on"].value()) == expires_on and form["overlap_days"].value() == "3"
    done = client.post(url, form.data.dict())
    assert done.status_code == 200 and done.context["renewed"] == key
    assert ApiKey.objects.get(replaces=key).expires_on.isoformat() == expires_on


@pytest.mark.parametrize("revoker", ["alice", "carol"])
def test_revoking_waits_for_the_confirmation_and_keeps_the_reason(
    revoker, alice, carol, login, stale, key
):
    person = {"alice": alice, "carol": carol}[revoker]
    client = login(person)
    stale()
    url = f"/keys/{key.identifier}/revoke/"

    back = asked_to_confirm(client.post(url, {"reason": "Leaked in a build log"}))

    key.refresh_from_db()
    assert not key.is_revoked
    page = confirm(client, person, back)
    assert page.context["form"]["reason"].value() == "Leaked in a build log"
    assert "Leaked in a build log</textarea>" in page.text
    client.post(url, page.context["form"].data.dict())
    key.refresh_from_db()
    assert key.is_revoked and key.revoke_reason == "Leaked in a build log"


def _edit_form(key, **changes) -> dict:
    data = {
        "name": key.name,
        "description": key.description,
        "expires_on": key.expires_on.isoformat(),
        "allowed_ips": [str(entry) for entry in key.allowed_ips.all()],
        "apis": [str(api.pk) for api in key.apis.all()],
    }
    return {**data, **changes}


def test_turning_on_self_rotation_waits_for_the_confirmation(alice, login, stale, key):
    client = login(alice)
    stale()
    url = f"/keys/{key.identifier}/edit/"

    back = asked_to_confirm(client.post(url, _edit_form(key, may_rotate_itself="on")))

    key.refresh_from_db()
    assert not key.may_rotate_itself
    page = confirm(client, alice, back)
    form = page.context["form"]
    assert form["may_rotate_itself"].value() is True
    assert client.post(url, _lists(form.data)).status_code == 302
    key.refresh_from_db()
    assert key.may_rotate_itself


def test_an_edit_that_does_not_turn_on_self_rotation_asks_nothing(alice, login, stale, key):
    client = login(alice)
    stale()
    response = client.post(f"/keys/{key.identifier}/edit/", _edit_form(key, name="Renamed"))
    assert response.status_code == 302 and response["Location"] == f"/keys/{key.identifier}/"
    key.refresh_from_db()
    assert key.name == "Renamed"


def test_deactivating_a_user_waits_for_the_confirmation_and_keeps_the_reason(
    carol, bob, login, stale
):
    client = login(carol)
    stale()
    url = "/users/bob/deactivate/"

    assert asked_to_confirm(client.get(url)) == url  # the page itself asks first
    back = asked_to_confirm(client.post(url, {"reason": "Left the company"}))

    bob.refresh_from_db()
    assert bob.is_active
    page = confirm(client, carol, back)
    assert page.context["form"]["reason"].value() == "Left the company"
    assert client.post(url, page.context["form"].data.dict()).status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active


def test_revoking_in_bulk_waits_for_the_confirmation_and_keeps_filters_and_reason(
    carol, alice, bob, make_key, login, stale
):
    kept = make_key(alice, name="Alice's")[0]
    bobs = [make_key(bob, name=f"Bob {n}")[0] for n in range(2)]
    client = login(carol)
    preview = client.get("/all-keys/revoke/?owner=bob")
    shown = preview.context["shown"]
    stale()

    back = asked_to_confirm(
        client.post("/all-keys/revoke/?owner=bob", {"reason": "INC-7", "shown": shown})
    )

    assert urlsplit(back).path == "/all-keys/revoke/" and "owner=bob" in back
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    page = confirm(client, carol, back)
    assert page.context["form"]["reason"].value() == "INC-7"
    assert "INC-7</textarea>" in page.text
    assert sorted(key.name for key in page.context["keys"]) == ["Bob 0", "Bob 1"]
    done = client.post("/all-keys/revoke/?owner=bob", page.context["form"].data.dict())
    assert done.status_code == 302
    assert all(ApiKey.objects.get(pk=key.pk).is_revoked for key in bobs)
    assert not ApiKey.objects.get(pk=kept.pk).is_revoked


# --- the Django admin: every change ----------------------------------------------------------


def _api_form(api: Api, **changes) -> dict:
    data = {
        "slug": api.slug,
        "name": api.name,
        "description": api.description,
        "position": api.position,
        "is_active": "on" if api.is_active else "",
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
    }
    return {**data, **changes}


def _admin_writes(alice, key):
    kris = Api.objects.get(slug="kris")
    new_api = {"slug": "assets", "name": "Assets", "description": "", "position": "9"}
    new_api.update({"is_active": "on", "routes-TOTAL_FORMS": "0", "routes-INITIAL_FORMS": "0"})
    return {
        "catalogue change": (
            f"/admin/keys/api/{kris.pk}/change/",
            _api_form(kris, name="KRIs"),
            lambda: Api.objects.get(slug="kris").name == "KRIs",
        ),
        "catalogue addition": (
            "/admin/keys/api/add/",
            new_api,
            lambda: Api.objects.filter(slug="assets").exists(),
        ),
        "catalogue deletion": (
            f"/admin/keys/api/{Api.objects.get(slug='mois').pk}/delete/",
            {"post": "yes"},
            lambda: not Api.objects.filter(slug="mois").exists(),
        ),
        "revoke action": (
            "/admin/keys/apikey/",
            {
                "action": "revoke_selected",
                "_selected_action": [str(key.pk)],
                "confirm": "yes",
                "reason": "Leaked",
            },
            lambda: ApiKey.objects.get(pk=key.pk).is_revoked,
        ),
        "user deactivate action": (
            "/admin/portal/user/",
            {"action": "deactivate_selected", "_selected_action": [str(alice.pk)], "index": "0"},
            lambda: not type(alice).objects.get(pk=alice.pk).is_active,
        ),
    }


ADMIN_WRITES = [
    "catalogue change",
    "catalogue addition",
    "catalogue deletion",
    "revoke action",
    "user deactivate action",
]


@pytest.mark.parametrize("write", ADMIN_WRITES)
def test_a_django_admin_change_waits_for_the_confirmation_then_is_sent_again(
    write, carol, alice, key, login, stale, django_user_model
):
    url, data, done = _admin_writes(alice, key)[write]
    if write == "catalogue deletion":
        carol = django_user_model.objects.create_superuser("root", "root@example.com", "root-pw")
        carol.set_password("root-portal-pw")  # confirm() types <username>-portal-pw
        carol.save()
    client = login(carol)
    stale()

    back = asked_to_confirm(client.post(url, {**data, "csrfmiddlewaretoken": "not-kept"}))

    assert not done()
    page = confirm(client, carol, back)
    assert page.status_code == 200 and "Send your change again" in page.text
    assert not done()  # shown, not sent
    assert "not-kept" not in page.text
    sent = client.post(urlsplit(back).path, data)
    assert sent.status_code == 302
    assert done()


def test_the_django_admin_change_of_a_password_keeps_no_password(carol, alice, login, stale):
    client = login(carol)
    stale()
    url = f"/admin/portal/user/{alice.pk}/password/"
    secret = "n3w-Secret-for-alice"

    back = asked_to_confirm(
        client.post(url, {"password1": secret, "password2": secret, "usable_password": "true"})
    )

    assert secret not in str(dict(client.session))
    page = confirm(client, carol, back)
    assert secret not in page.text
    alice.refresh_from_db()
    assert alice.check_password("alice-portal-pw")


def test_reading_the_django_admin_asks_nothing(carol, login, stale):
    client = login(carol)
    stale()
    assert client.get("/admin/keys/api/").status_code == 200


# --- within the window: no confirmation --------------------------------------------------


def test_within_the_window_every_act_goes_through_at_once(
    alice, carol, bob, key, login, time_machine, today
):
    client = login(alice)
    after(time_machine, settings.REAUTH_SECONDS - 1)

    assert client.post("/keys/add/", add_form(today)).status_code == 200
    assert ApiKey.objects.filter(name="Reporting job").exists()
    regenerated = client.post(f"/keys/{key.identifier}/regenerate/", {"overlap": "none"})
    assert regenerated.status_code == 200 and regenerated.context["regenerated"]
    edit = _edit_form(key, may_rotate_itself="on")
    assert client.post(f"/keys/{key.identifier}/edit/", edit).status_code == 302
    revoked = client.post(f"/keys/{key.identifier}/revoke/", {"reason": "done"})
    assert revoked.status_code == 302

    admin = login(carol)  # proves anew: the window starts at this log-in
    after(time_machine, 2 * settings.REAUTH_SECONDS - 2)
    assert admin.post("/users/bob/deactivate/", {"reason": "left"}).status_code == 302
    kris = Api.objects.get(slug="kris")
    changed = admin.post(f"/admin/keys/api/{kris.pk}/change/", _api_form(kris, name="KRIs"))
    assert changed.status_code == 302


def test_a_confirmation_opens_a_new_window(alice, login, stale, time_machine, today):
    client = login(alice)
    stale()
    client.post(CONFIRM, password_entry("alice-portal-pw", "/keys/"))
    after(time_machine, 2 * settings.REAUTH_SECONDS - 1)
    assert client.post("/keys/add/", add_form(today)).status_code == 200
    after(time_machine, 2 * settings.REAUTH_SECONDS + 1)
    asked_to_confirm(client.post("/keys/add/", add_form(today)))


def test_a_log_in_through_the_form_opens_the_window(alice, client, stale, time_machine, today):
    client.post("/login/", {"username": "alice", "password": "alice-portal-pw"})
    after(time_machine, settings.REAUTH_SECONDS - 1)
    assert client.get("/keys/add/").status_code == 200
    after(time_machine, settings.REAUTH_SECONDS)
    assert asked_to_confirm(client.get("/keys/add/")) == "/keys/add/"


# --- the confirmation itself --------------------------------------------------------------


def test_a_wrong_password_is_refused_and_counted_by_the_log_in_throttle(alice, login, stale, today):
    client = login(alice)
    stale()
    back = asked_to_confirm(client.post("/keys/add/", add_form(today)))

    wrong = client.post(CONFIRM, password_entry("guess", back))

    assert wrong.status_code == 400
    assert "That is not your password" in wrong.text
    assert not reauth.proved_recently(wrong.wsgi_request)
    failed = AuditEvent.objects.get(action="login_failed")
    assert failed.details["while"] == "confirming identity"
    assert failed.details["user"] == "alice" and failed.details["failures_in_window"] == 1
    for _ in range(settings.LOGIN_THROTTLE_MAX_FAILURES - 1):
        client.post(CONFIRM, password_entry("guess", back))
    # The throttle now refuses even the right password, as it would at /login/.
    locked = client.post(CONFIRM, password_entry("alice-portal-pw", back))
    assert locked.status_code == 400 and "Too many wrong passwords" in locked.text
    asked_to_confirm(client.get("/keys/add/"))
    assert not AuditEvent.objects.filter(action="identity_confirmed").exists()


def test_an_empty_password_is_refused_next_to_its_field(alice, login, stale):
    client = login(alice)
    stale()
    response = client.post(CONFIRM, password_entry("", "/keys/add/"))
    assert response.status_code == 400
    assert "Type your password to confirm it" in response.text
    assert not AuditEvent.objects.filter(action="login_failed").exists()


def test_the_confirmation_is_in_the_audit_history(alice, dave, login, stale):
    client = login(alice)
    stale()
    client.post(CONFIRM, password_entry("alice-portal-pw", "/keys/"))

    event = AuditEvent.objects.get(action="identity_confirmed")
    assert event.actor == alice and event.owner == alice
    assert event.details == {"user": "alice", "method": "password"}
    history = login(dave).get("/audit/?action=identity_confirmed")
    assert history.status_code == 200
    assert "Identity confirmed" in history.text and "password" in history.text


def test_the_confirmation_goes_back_only_to_this_site(alice, login, stale):
    client = login(alice)
    stale()
    response = client.post(CONFIRM, password_entry("alice-portal-pw", "https://evil.example/keys/"))
    assert response.status_code == 302 and response["Location"] == "/keys/"


def test_the_confirmation_page_needs_a_log_in(client):
    response = client.get(CONFIRM)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_who_may_not_act_is_refused_before_being_asked_to_confirm(alice, bob, login, stale):
    client = login(alice)
    stale()
    assert client.post("/users/bob/deactivate/", {"reason": "x"}).status_code == 403
    assert reauth.PENDING not in client.session
    bob.refresh_from_db()
    assert bob.is_active


def test_an_htmx_request_is_sent_to_confirm_as_a_whole_page(carol, bob, login, stale):
    client = login(carol)
    stale()
    response = client.post("/users/bob/deactivate/", {"reason": "x"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert urlsplit(response["HX-Redirect"]).path == CONFIRM


def test_a_person_without_a_password_here_is_sent_to_sign_in_again_not_asked_for_one(
    alice, login, stale, today
):
    # No usable password and no link to the single sign-on provider: nothing to confirm with
    # here (a linked person confirms at the provider: tests/test_sso_browser.py).
    alice.set_unusable_password()
    alice.save()
    client = login(alice)
    stale()
    back = asked_to_confirm(client.post("/keys/add/", add_form(today)))

    page = client.get(f"{CONFIRM}?next={back}")
    typed = client.post(CONFIRM, password_entry("anything", back))

    assert 'name="password-password"' not in page.text
    assert "log in again through your organisation" in page.text
    assert typed.status_code == 400
    assert not AuditEvent.objects.filter(action="identity_confirmed").exists()
    asked_to_confirm(client.post("/keys/add/", add_form(today)))


# --- a second factor: a TOTP code confirms, a recovery code never does ----------------------


@pytest.fixture
def alices_totp(alice):
    """Alice's authenticator app (its secret) and her recovery codes."""
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    secret = generate_totp_secret()
    TOTP.activate(alice, secret)
    return secret, RecoveryCodes.activate(alice).get_unused_codes()


def totp_now(secret: str) -> str:
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def code_entry(code: str, back: str) -> dict:
    return {"method": "totp", "totp-code": code, "next": back}


def test_a_code_from_the_authenticator_app_confirms(alice, alices_totp, login, stale, today):
    secret, _recovery = alices_totp
    client = login(alice)
    stale()
    back = asked_to_confirm(client.post("/keys/add/", add_form(today)))
    assert 'name="totp-code"' in client.get(f"{CONFIRM}?next={back}").text

    response = client.post(CONFIRM, code_entry(totp_now(secret), back))

    assert response.status_code == 302 and response["Location"] == back
    event = AuditEvent.objects.get(action="identity_confirmed")
    assert event.details == {"user": "alice", "method": "totp"}
    assert client.get(back).context["form"]["name"].value() == "Reporting job"


def test_a_recovery_code_does_not_confirm_and_counts_as_a_wrong_code(
    alice, alices_totp, login, stale, today
):
    _secret, recovery = alices_totp
    client = login(alice)
    stale()
    back = asked_to_confirm(client.post("/keys/add/", add_form(today)))

    refused = client.post(CONFIRM, code_entry(recovery[0], back))

    assert refused.status_code == 400
    assert "Recovery codes do not confirm" in refused.text
    assert recovery[0] not in refused.text
    assert not AuditEvent.objects.filter(action="identity_confirmed").exists()
    failed = AuditEvent.objects.get(action="second_factor_failed")
    assert failed.details == {
        "user": "alice",
        "step": "confirming it's you",
        "failures_in_window": 1,
    }
    asked_to_confirm(client.post("/keys/add/", add_form(today)))
    from allauth.mfa.models import Authenticator
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    codes = Authenticator.objects.get(user=alice, type="recovery_codes")
    assert recovery[0] in RecoveryCodes(codes).get_unused_codes()  # not spent either


def test_allauths_own_second_factor_confirmation_refuses_a_recovery_code(
    alice, alices_totp, login, stale, today
):
    secret, recovery = alices_totp
    client = login(alice)
    stale()

    refused = client.post("/accounts/2fa/reauthenticate/", {"code": recovery[0], "next": "/keys/"})

    assert refused.status_code == 200  # the form again, with its error
    assert "Recovery codes do not confirm" in refused.text
    assert recovery[0] not in refused.text
    assert not AuditEvent.objects.filter(action="identity_confirmed").exists()
    asked_to_confirm(client.post("/keys/add/", add_form(today)))
    taken = client.post(
        "/accounts/2fa/reauthenticate/", {"code": totp_now(secret), "next": "/keys/"}
    )
    assert taken.status_code == 302
    assert AuditEvent.objects.get(action="identity_confirmed").details["method"] == "totp"
    assert client.post("/keys/add/", add_form(today)).status_code == 200


def test_allauths_own_password_confirmation_is_a_confirmation_not_a_log_in(
    alice, login, stale, today
):
    client = login(alice)
    stale()
    wrong = client.post("/accounts/reauthenticate/", {"password": "guess", "next": "/keys/"})
    assert wrong.status_code == 200
    assert AuditEvent.objects.get(action="login_failed").details["while"] == ("confirming identity")

    right = client.post(
        "/accounts/reauthenticate/", {"password": "alice-portal-pw", "next": "/keys/"}
    )

    assert right.status_code == 302
    assert AuditEvent.objects.get(action="identity_confirmed").details["method"] == "password"
    assert not AuditEvent.objects.filter(action="login_succeeded").exists()
    assert client.post("/keys/add/", add_form(today)).status_code == 200


# --- the setting -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_reauth_seconds_must_be_a_positive_number(monkeypatch, value):
    from portal.env import env_positive_int

    monkeypatch.setenv("REAUTH_SECONDS", value)
    with pytest.raises(ImproperlyConfigured, match="REAUTH_SECONDS"):
        env_positive_int("REAUTH_SECONDS", 900)


def test_reauth_seconds_defaults_to_fifteen_minutes(monkeypatch):
    from portal.env import env_positive_int

    monkeypatch.delenv("REAUTH_SECONDS", raising=False)
    assert env_positive_int("REAUTH_SECONDS", 900) == 900


def test_tightening_the_key_policy_waits_for_the_confirmation_and_keeps_the_networks(
    carol, login, stale
):
    client = login(carol)
    stale()
    assert client.get("/policy/").status_code == 200  # reading the policy asks nothing
    typed = {"approved_networks": "10.0.0.0/8", "max_lifetime_days": "200"}
    back = asked_to_confirm(client.post("/policy/", typed))

    assert KeyPolicy.current().approved_networks == []
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.POLICY_CHANGED).exists()
    page = confirm(client, carol, back)
    assert page.context["form"]["approved_networks"].value() == "10.0.0.0/8"
    assert page.context["form"]["max_lifetime_days"].value() == "200"


def test_a_stream_destination_waits_for_the_confirmation_and_no_header_is_held(
    carol, login, stale, time_machine
):
    client = login(carol)
    stale()
    typed = {
        "name": "Splunk",
        "kind": "webhook",
        "url": "https://siem.example.com/collector",
        "secret_choice": "generate",
        "batch_size": "100",
        "is_active": "on",
        "headers_text": "Authorization: Splunk 0b9f5c1e-held-nowhere",
    }
    back = asked_to_confirm(client.post("/audit/streaming/add/", typed))

    assert not StreamDestination.objects.exists()
    held = dict(client.session.items())
    assert "held-nowhere" not in repr(held)  # the SIEM's token stays out of the session
    page = confirm(client, carol, back)
    assert page.context["form"]["name"].value() == "Splunk"
    assert not page.context["form"]["headers_text"].value()
    assert client.post("/audit/streaming/add/", typed).status_code == 200
    destination = StreamDestination.objects.get(name="Splunk")

    after(time_machine, 2 * settings.REAUTH_SECONDS + 1)  # past the window the confirming opened
    remove = f"/audit/streaming/{destination.identifier}/remove/"
    asked_to_confirm(client.post(remove))
    assert StreamDestination.objects.filter(pk=destination.pk).exists()
