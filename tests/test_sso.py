"""Single sign-on over HTTP with Django's test client: the button, SSO_ONLY, bad answers.

The log-ins themselves, through a real provider in Chromium, are in tests/test_sso_browser.py.
"""

import http.server
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group

from keys.models import AuditEvent
from portal import sso
from portal.env import oidc_providers
from portal.roles import roles_of, set_roles
from portal.user_events import acting, one_roles_event
from tests.servers import free_port, manage, manage_env

LOGIN_URL = f"/accounts/oidc/{sso.PROVIDER_ID}/login/"
CALLBACK_URL = f"/accounts/oidc/{sso.PROVIDER_ID}/login/callback/"


def configure(settings, issuer: str, label: str = "Contoso") -> None:
    settings.OIDC_ISSUER = issuer
    settings.OIDC_CLIENT_ID = "key-portal"
    settings.OIDC_CLIENT_SECRET = "test-only-secret"
    settings.OIDC_BUTTON_LABEL = label
    settings.SOCIALACCOUNT_PROVIDERS = oidc_providers(
        issuer=issuer, client_id="key-portal", secret="test-only-secret", label=label, scopes=[]
    )


# --- the button --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_without_a_provider_the_log_in_page_has_no_sso_button(client):
    # As `make run` serves it: a local log-in, nothing else.
    page = client.get("/login/").content.decode()
    assert "Sign in with" not in page
    assert 'name="password"' in page


@pytest.mark.django_db
def test_with_a_provider_the_log_in_page_has_its_button_posting_to_allauth(client, settings):
    configure(settings, "https://login.example.com/realms/staff")
    page = client.get("/login/?next=/audit/").content.decode()
    assert "Sign in with Contoso" in page
    assert f'action="{LOGIN_URL}"' in page
    assert 'name="next" value="/audit/"' in page
    assert 'name="password"' in page  # the break-glass accounts still need it


def test_the_log_in_page_lets_its_form_reach_the_provider():
    # Browsers hold a form's redirects to CSP form-action: the provider's origin is in it.
    script = (
        "from django.conf import settings as s; "
        "print(s.CONTENT_SECURITY_POLICY['DIRECTIVES']['form-action'])"
    )
    with_sso = manage(
        "shell",
        "-v",
        "0",
        "-c",
        script,
        env=manage_env(OIDC_ISSUER="https://login.example.com/realms/staff"),
    )
    assert with_sso.stdout.strip() == "[\"'self'\", 'https://login.example.com']"
    without = manage("shell", "-v", "0", "-c", script, env=manage_env())
    assert without.stdout.strip() == "[\"'self'\"]"


# --- SSO_ONLY ----------------------------------------------------------------------------------


@pytest.fixture
def sso_only(settings):
    configure(settings, "https://login.example.com/realms/staff")
    settings.SSO_ONLY = True
    settings.SSO_BREAK_GLASS_ACCOUNTS = ["carol"]


def test_sso_only_refuses_the_right_password_of_an_account_not_named_for_break_glass(
    sso_only, alice, rf
):
    request = rf.post("/login/")
    assert authenticate(request, username="alice", password="alice-portal-pw") is None


def test_sso_only_lets_a_break_glass_account_log_in_with_its_password(sso_only, carol, rf):
    request = rf.post("/login/")
    assert authenticate(request, username="carol", password="carol-portal-pw") == carol


def test_sso_only_says_why_on_the_django_admin_log_in_too(
    sso_only, carol, django_user_model, client
):
    boss = django_user_model.objects.create_superuser("boss", password="boss-portal-pw")
    done = client.post(
        "/admin/login/?next=/admin/", {"username": "boss", "password": "boss-portal-pw"}
    )
    assert done.status_code == 200
    assert "Log-in with a password is turned off here: use Sign in with Contoso." in (
        done.content.decode()
    )
    assert "_auth_user_id" not in client.session
    # The break-glass account gets into the admin (a superuser here, to be let in).
    carol.is_staff = carol.is_superuser = True
    carol.save()
    done = client.post(
        "/admin/login/?next=/admin/", {"username": "carol", "password": "carol-portal-pw"}
    )
    assert done.status_code == 302
    assert client.session["_auth_user_id"] == str(carol.pk)
    del boss


@pytest.mark.django_db
def test_without_sso_only_every_password_works_as_before(settings, alice, rf):
    configure(settings, "https://login.example.com/realms/staff")
    request = rf.post("/login/")
    assert authenticate(request, username="alice", password="alice-portal-pw") == alice


# --- a provider that is down or answers garbage: a page that says so, never a 500 -------------

PROVIDER_DOWN = sso.PROVIDER_DOWN


@pytest.mark.django_db
def test_a_provider_nobody_answers_at_gives_the_provider_down_page(client, settings):
    configure(settings, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    done = client.post(LOGIN_URL, {"next": "/"})
    assert done.status_code == 502
    assert PROVIDER_DOWN in done.content.decode()
    assert done["Retry-After"] == "30"


class _Garbage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>Internal Server Error</html>"
        self.send_response(200 if "well-known" in self.path else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def garbage_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_a_discovery_document_that_is_no_json_gives_the_provider_down_page(
    client, settings, garbage_server
):
    configure(settings, garbage_server)
    done = client.post(LOGIN_URL, {"next": "/"})
    assert done.status_code == 502
    assert PROVIDER_DOWN in done.content.decode()


@pytest.mark.django_db
def test_a_callback_the_portal_did_not_start_is_refused_not_a_500(client, settings):
    configure(settings, f"http://127.0.0.1:{free_port()}")
    done = client.get(CALLBACK_URL, {"code": "stolen", "state": "made-up"})
    assert done.status_code == 400
    assert "Single sign-on did not complete" in done.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        ("access_denied", 400, "Single sign-on was cancelled at the provider."),
        ("server_error", 502, PROVIDER_DOWN),
    ],
)
def test_an_error_the_provider_sends_back_gives_a_page_not_a_500(
    client, settings, oidc_provider, error, status, words
):
    configure(settings, oidc_provider.issuer)
    started = client.post(LOGIN_URL, {"next": "/"})
    assert started.status_code == 302
    assert started["Location"].startswith(oidc_provider.issuer + "/auth?")
    asked = parse_qs(urlsplit(started["Location"]).query)
    assert asked["code_challenge_method"] == ["S256"]  # PKCE, besides the client secret
    state = asked["state"][0]

    done = client.get(CALLBACK_URL, {"error": error, "state": state})

    assert done.status_code == status
    assert words in done.content.decode()
    assert "_auth_user_id" not in client.session


# --- roles from the claim ----------------------------------------------------------------------

ROLE_MAP = {"key-admins": "admin", "key-auditors": "auditor"}


@pytest.mark.parametrize(
    ("value", "roles"),
    [
        (["key-admins", "everyone"], {"admin"}),
        (["key-admins", "key-auditors"], {"admin", "auditor"}),
        ("key-auditors", {"auditor"}),  # one group sent as a string
        (["everyone"], {"staff"}),
        ([], {"staff"}),
        (None, {"staff"}),  # no claim at all
        ({"key-admins": True}, {"staff"}),  # a shape the map does not read
    ],
)
def test_the_role_map_turns_claim_values_into_roles(value, roles):
    assert sso.roles_from_claim(value, ROLE_MAP) == roles


def test_the_role_claim_is_read_from_userinfo_else_the_id_token_and_may_be_dotted():
    userinfo = {"sub": "1", "email": "e@corp.example"}
    id_token = {"sub": "1", "groups": ["key-admins"], "realm_access": {"roles": ["x"]}}
    assert sso._claim([userinfo, id_token], "groups") == ["key-admins"]
    assert sso._claim([userinfo, id_token], "realm_access.roles") == ["x"]
    assert sso._claim([{"groups": ["a"]}, id_token], "groups") == ["a"]
    assert sso._claim([userinfo], "groups") is None


@pytest.mark.django_db
def test_the_user_name_is_preferred_username_else_a_valid_email():
    assert sso.username_for([{"preferred_username": "erin", "email": "e@x.example"}]) == "erin"
    # Entra ID's preferred_username is the UPN, a valid user name as it is.
    assert sso.username_for([{"preferred_username": "erin@contoso.example"}]) == (
        "erin@contoso.example"
    )
    assert sso.username_for([{"preferred_username": "Erin Visser", "email": "e@x.example"}]) == (
        "e@x.example"
    )
    assert (
        sso.username_for([{"preferred_username": "Erin Visser", "email": "not an address"}]) == ""
    )


@pytest.mark.django_db
def test_a_change_of_role_by_the_provider_is_one_event_naming_it(alice):
    set_roles(alice, {"admin"})  # as an admin would, outside single sign-on
    before = AuditEvent.objects.count()
    with acting(None, "192.0.2.7", label="single sign-on", via="sso"), one_roles_event():
        set_roles(alice, {"auditor"})
    (event,) = AuditEvent.objects.filter(seq__gt=before)
    assert event.action == "roles_changed"
    assert event.actor_label == "single sign-on"
    assert event.actor_ip == "192.0.2.7"
    assert event.details == {
        "user": "alice",
        "added": ["auditor"],
        "removed": ["admin"],
        "via": "sso",
    }
    assert roles_of(alice) == {"auditor"}


@pytest.mark.django_db
def test_setting_the_same_roles_again_records_nothing(alice):
    before = AuditEvent.objects.count()
    with one_roles_event():
        set_roles(alice, {"staff"})
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_set_roles_keeps_groups_that_are_no_role_and_refuses_unknown_roles(alice):
    other = Group.objects.create(name="newsletter")
    alice.groups.add(other)
    set_roles(alice, {"auditor"})
    assert set(alice.groups.values_list("name", flat=True)) == {"auditor", "newsletter"}
    with pytest.raises(ValueError, match="Not a role: root"):
        set_roles(alice, {"root"})


# --- the test provider's own rule: missing Node.js skips loudly, but fails on CI -------------


def test_without_node_the_provider_tests_skip_loudly_but_fail_under_ci(monkeypatch):
    from tests import oidc_server

    monkeypatch.setattr(oidc_server.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"SKIPPED LOUDLY: Node\.js and npm"):
        oidc_server._node_and_npm()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: required, not skipped"):
        oidc_server._node_and_npm()


# --- "Confirm it's you" through the provider -------------------------------------------------


class _Discovery(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = json.dumps(
            {
                "issuer": issuer,
                "authorization_endpoint": issuer + "/auth",
                "token_endpoint": issuer + "/token",
                "userinfo_endpoint": issuer + "/me",
                "jwks_uri": issuer + "/jwks",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def discovery_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Discovery)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_confirming_sends_a_linked_person_to_log_in_afresh_at_the_provider(
    client, settings, discovery_server, alice
):
    configure(settings, discovery_server)
    alice.set_unusable_password()
    alice.save()
    SocialAccount.objects.create(user=alice, provider=sso.PROVIDER_ID, uid="sub-alice")
    client.force_login(alice)

    page = client.get("/confirm/", {"next": "/keys/add/"})
    sent = client.post("/confirm/sso/?next=/keys/add/")

    assert 'action="/confirm/sso/?next=%2Fkeys%2Fadd%2F"' in page.content.decode()
    assert sent.status_code == 302
    target = urlsplit(sent["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == discovery_server + "/auth"
    assert (query["prompt"], query["max_age"]) == (["login"], ["0"])


@pytest.mark.django_db
def test_a_person_with_a_password_or_no_sso_account_is_not_sent_to_the_provider(
    client, settings, discovery_server, alice
):
    configure(settings, discovery_server)
    client.force_login(alice)
    sent = client.post("/confirm/sso/?next=/keys/add/")
    assert sent.status_code == 302
    assert urlsplit(sent["Location"]).path == "/confirm/"


def _answer_for(rf, alice, *, auth_time, since):
    """The provider's answer to a confirmation alice began at `since`, as allauth hands it on."""
    from allauth.socialaccount.models import SocialLogin
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.middleware import SessionMiddleware

    request = rf.get(CALLBACK_URL)
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = alice
    request._messages = FallbackStorage(request)
    account = SocialAccount.objects.create(
        user=alice,
        provider=sso.PROVIDER_ID,
        uid="sub-alice",
        extra_data={"id_token": {"sub": "sub-alice", "auth_time": auth_time}},
    )
    answer = SocialLogin(account=account, user=alice)
    answer.state = {
        "process": "redirect",
        "next": "/keys/add/",
        sso.CONFIRM_FOR: alice.pk,
        sso.CONFIRM_SINCE: since,
    }
    return request, answer


@pytest.mark.django_db
def test_a_provider_that_did_not_ask_again_does_not_confirm(settings, rf, alice):
    # auth_time before the confirmation began: the provider remembered the person instead of
    # asking them to log in (it ignored prompt=login), which proves nothing about who is there.
    from allauth.core.exceptions import ImmediateHttpResponse

    configure(settings, "http://127.0.0.1:9")
    now = time.time()
    request, answer = _answer_for(rf, alice, auth_time=int(now) - 600, since=now)

    with pytest.raises(ImmediateHttpResponse) as refused:
        sso.SocialAccountAdapter(request).pre_social_login(request, answer)

    assert refused.value.response.status_code == 403
    assert "did not ask you to log in again" in refused.value.response.content.decode()
    assert not AuditEvent.objects.filter(action="identity_confirmed").exists()


@pytest.mark.django_db
def test_a_fresh_log_in_at_the_provider_confirms(settings, rf, alice):
    configure(settings, "http://127.0.0.1:9")
    now = time.time()
    request, answer = _answer_for(rf, alice, auth_time=int(now), since=now)

    sso.SocialAccountAdapter(request).pre_social_login(request, answer)

    (confirmed,) = AuditEvent.objects.filter(action="identity_confirmed")
    assert confirmed.details["method"] == "sso"
