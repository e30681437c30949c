"""Single sign-on in a real Chromium against a real OpenID Provider (tests/oidc_server.py).

The person presses "Sign in with Test IdP" on the portal's log-in page, logs in on the
provider's own page, and comes back signed in: created at the first log-in with the role the
provider's groups map to, the role changing when the groups change, a deactivated account
refused, a provider that is down or answers garbage giving a page that says so.
"""

import datetime
import json
import re
import time

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from playwright.sync_api import expect

from keys.models import ApiKey, AuditEvent, local_date
from portal.env import form_action_sources, oidc_providers
from portal.people import deactivate_user
from portal.roles import roles_of
from tests.browser import check, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABEL = "Test IdP"
PROVIDER_DOWN = (
    "The single sign-on provider did not answer. Try again later or ask an administrator."
)


@pytest.fixture
def sso(settings, oidc_provider):
    """The portal configured for the test provider as an operator would, through settings."""
    settings.OIDC_ISSUER = oidc_provider.issuer
    settings.OIDC_CLIENT_ID = oidc_provider.client_id
    settings.OIDC_CLIENT_SECRET = oidc_provider.client_secret
    settings.OIDC_BUTTON_LABEL = LABEL
    settings.OIDC_SCOPES = ["openid", "profile", "email", "groups"]
    settings.OIDC_ROLE_CLAIM = "groups"
    settings.OIDC_ROLE_MAP = {"key-admins": "admin", "key-auditors": "auditor"}
    settings.SOCIALACCOUNT_PROVIDERS = oidc_providers(
        issuer=oidc_provider.issuer,
        client_id=oidc_provider.client_id,
        secret=oidc_provider.client_secret,
        label=LABEL,
        scopes=settings.OIDC_SCOPES,
    )
    policy = settings.CONTENT_SECURITY_POLICY
    directives = {**policy["DIRECTIVES"], "form-action": form_action_sources(oidc_provider.issuer)}
    settings.CONTENT_SECURITY_POLICY = {**policy, "DIRECTIVES": directives}
    return oidc_provider


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def start_sso(page, base: str):
    """Open the portal's log-in page and press the single sign-on button; the response."""
    page.goto(base + "/login/")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=f"Sign in with {LABEL}").click()
    return navigation.value


def sso_log_in(page, base: str, login: str) -> None:
    """Log in through the provider as `login` (its development log-in page takes any password).

    At a second log-in from the same browser the provider remembers the person, as a real
    one does, and sends them straight back.
    """
    start_sso(page, base)
    if not page.url.startswith(base):
        provider_log_in(page, login)
    page.wait_for_url(re.compile("^" + re.escape(base)))
    page.wait_for_load_state("load")


def provider_log_in(page, login: str) -> None:
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()


def portal_console_errors(page, base: str) -> list[str]:
    """Console errors of the portal's pages (the provider's development pages load fonts from
    the internet and have no favicon: not ours)."""
    errors: list[str] = []

    def note(message) -> None:
        if message.type == "error" and message.location.get("url", "").startswith(base):
            errors.append(message.text)

    page.on("console", note)
    return errors


def log_out(page) -> None:
    page.get_by_role("banner").locator("summary").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state("load")


def events(action: str, username: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, owner__username=username).order_by("seq"))


def test_the_first_sso_log_in_creates_the_user_with_the_mapped_role(sso, page, live_server):
    sso.add_account("erin", groups=["key-admins", "everyone"], name="Erin Visser")
    errors = portal_console_errors(page, live_server.url)

    sso_log_in(page, live_server.url, "erin")

    # Signed in as an admin: the admin's links are there.
    expect(page.get_by_role("banner").locator("summary")).to_have_text("Erin Visser")
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Users")
    ).to_be_visible()
    shot(page, "sso-first-log-in")
    erin = get_user_model().objects.get(username="erin")
    assert roles_of(erin) == {"admin"}
    assert erin.email == "erin@corp.example"
    assert not erin.has_usable_password()  # nobody can log in as erin with a password
    (created,) = events("user_created", "erin")
    assert created.actor_label == "single sign-on"
    assert created.details["via"] == "sso"
    (roles,) = events("roles_changed", "erin")
    assert (roles.actor_label, roles.details["added"], roles.details["removed"]) == (
        "single sign-on",
        ["admin"],
        [],
    )
    assert roles.details["via"] == "sso"
    (log_in,) = events("login_succeeded", "erin")
    assert log_in.actor_label == "erin"
    assert log_in.details["method"] == "sso"
    assert log_in.details["subject"] == "sub-erin"
    assert log_in.details["roles"] == ["admin"]
    # As the audit history says it.
    page.goto(live_server.url + "/audit/")
    history = page.get_by_role("main")
    expect(history).to_contain_text("the single sign-on provider")
    expect(history).to_contain_text("added: admin")
    expect(history).to_contain_text("method: sso")
    expect(history).to_contain_text("provider's id (sub): sub-erin")
    assert errors == []


def test_no_mapped_group_makes_staff(sso, page, live_server):
    sso.add_account("finn", groups=["everyone"])
    sso_log_in(page, live_server.url, "finn")
    expect(page.get_by_role("heading", name="API Keys")).to_be_visible()
    assert roles_of(get_user_model().objects.get(username="finn")) == {"staff"}


def test_the_role_follows_the_providers_groups_at_the_next_log_in(sso, page, live_server):
    sso.add_account("erin", groups=["key-admins"])
    sso_log_in(page, live_server.url, "erin")
    log_out(page)

    sso.set_groups("erin", ["key-auditors"])  # at the provider, by its administrator
    sso_log_in(page, live_server.url, "erin")

    # An auditor starts at the audit history; no Users link any more.
    expect(page.get_by_role("heading", name="Audit history")).to_be_visible()
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    erin = get_user_model().objects.get(username="erin")
    assert roles_of(erin) == {"auditor"}
    _first, change = events("roles_changed", "erin")
    assert (change.details["added"], change.details["removed"]) == (["auditor"], ["admin"])
    assert change.actor_label == "single sign-on"
    assert [e.details["roles"] for e in events("login_succeeded", "erin")] == [
        ["admin"],
        ["auditor"],
    ]

    # The same groups again: no role change to record.
    log_out(page)
    sso_log_in(page, live_server.url, "erin")
    assert len(events("roles_changed", "erin")) == 2
    assert len(events("login_succeeded", "erin")) == 3


def test_an_account_an_admin_made_is_linked_at_its_first_sso_log_in(sso, page, live_server):
    made = get_user_model().objects.create_user("gina", email="gina@corp.example")
    sso.add_account("gina", groups=["key-auditors"])

    sso_log_in(page, live_server.url, "gina")

    expect(page.get_by_role("heading", name="Audit history")).to_be_visible()
    assert get_user_model().objects.filter(username="gina").count() == 1
    (link,) = SocialAccount.objects.filter(user=made)
    assert link.uid == "sub-gina"
    assert roles_of(made) == {"auditor"}
    assert events("login_succeeded", "gina")[-1].details["linked"] is True


def test_an_account_is_linked_whatever_the_case_of_its_user_name(sso, page, live_server):
    made = get_user_model().objects.create_user("Erin.Visser@contoso.example")
    sso.add_account("erin", preferred_username="erin.visser@contoso.example", email="")

    sso_log_in(page, live_server.url, "erin")

    assert SocialAccount.objects.get(uid="sub-erin").user == made
    assert get_user_model().objects.count() == 1


def test_a_deactivated_user_cannot_get_in_through_sso(sso, page, live_server):
    sso.add_account("erin", groups=["key-admins"])
    sso_log_in(page, live_server.url, "erin")
    log_out(page)
    erin = get_user_model().objects.get(username="erin")
    deactivate_user(erin, actor=None, reason="Left the company")

    # The provider still knows erin (its account was not disabled there yet).
    sso_log_in(page, live_server.url, "erin")

    expect(page.get_by_role("heading", name="Single sign-on refused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("The account erin is deactivated.")
    page.goto(live_server.url + "/keys/")
    expect(page).to_have_url(re.compile("/login/"))  # not signed in
    refused = events("login_failed", "erin")[-1]
    assert refused.details == {"user": "erin", "method": "sso", "reason": "deactivated"}
    assert len(events("login_succeeded", "erin")) == 1


def test_a_deactivated_account_is_not_revived_by_linking(sso, page, live_server):
    made = get_user_model().objects.create_user("hugo", email="hugo@corp.example")
    made.is_active = False
    made.save()
    sso.add_account("hugo", groups=["key-admins"])

    sso_log_in(page, live_server.url, "hugo")

    expect(page.get_by_role("alert")).to_contain_text("The account hugo is deactivated.")
    made.refresh_from_db()
    assert not made.is_active
    assert roles_of(made) == set()
    assert not SocialAccount.objects.filter(user=made).exists()


def test_a_provider_that_is_down_gives_a_clear_page(sso, page, live_server):
    errors = portal_console_errors(page, live_server.url)
    sso.stop()

    response = start_sso(page, live_server.url)

    assert response.status == 502
    expect(page.get_by_role("heading", name="Single sign-on unavailable")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text(PROVIDER_DOWN)
    found: dict[str, list[str]] = {}
    check(page, "sso-provider-down", found)
    assert found["sso-provider-down"] == []
    assert [e for e in errors if "status of 502" not in e] == []


def test_a_token_endpoint_answering_500_gives_the_clear_page(sso, page, live_server):
    sso.add_account("erin", groups=["key-admins"])
    sso.fail_token_endpoint(500)

    start_sso(page, live_server.url)
    with page.expect_response(re.compile(r"/login/callback/")) as callback:
        provider_log_in(page, "erin")

    assert callback.value.status == 502
    expect(page.get_by_role("alert")).to_have_text(PROVIDER_DOWN)
    assert not get_user_model().objects.filter(username="erin").exists()


def test_the_log_in_page_with_the_button_passes_axe_and_works_by_keyboard(sso, page, live_server):
    sso.add_account("erin", groups=[])
    page.goto(live_server.url + "/login/")
    found: dict[str, list[str]] = {}
    check(page, "login-with-sso", found)
    assert found["login-with-sso"] == []

    # By keyboard, the button comes before the password form.
    button = page.get_by_role("button", name=f"Sign in with {LABEL}")
    for _ in range(5):
        page.keyboard.press("Tab")
        if button.evaluate("element => element === document.activeElement"):
            break
        assert not page.get_by_label("Username").evaluate(
            "element => element === document.activeElement"
        )
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    page.locator("input[name=login]").wait_for()
    assert page.url.startswith(sso.issuer)


def test_sso_only_refuses_a_local_password_but_lets_the_break_glass_account_in(
    sso, settings, page, live_server, django_user_model
):
    settings.SSO_ONLY = True
    settings.SSO_BREAK_GLASS_ACCOUNTS = ["root"]
    for name in ("carol", "root"):
        person = django_user_model.objects.create_user(name, password=f"{name}-portal-pw")
        person.groups.add(Group.objects.get(name="admin"))

    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("carol-portal-pw")  # her right password
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("alert")).to_contain_text(
        f"Log-in with a password is turned off here: use Sign in with {LABEL}."
    )
    shot(page, "sso-only-password-refused")
    assert not events("login_succeeded", "carol")

    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-portal-pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Users")).to_be_visible()
    assert len(events("login_succeeded", "root")) == 1


def test_a_break_glass_account_is_never_taken_over_through_sso(
    sso, settings, page, live_server, django_user_model
):
    settings.SSO_BREAK_GLASS_ACCOUNTS = ["root"]
    root = django_user_model.objects.create_user(
        "root", password="root-portal-pw", email="root@corp.example"
    )
    sso.add_account("root", groups=["key-admins"])  # someone at the provider named root

    sso_log_in(page, live_server.url, "root")

    expect(page.get_by_role("alert")).to_contain_text("root is a local break-glass account")
    assert not SocialAccount.objects.filter(user=root).exists()
    assert not events("login_succeeded", "root")


def test_an_account_linked_to_one_person_at_the_provider_is_not_given_to_another(
    sso, browser, page, live_server
):
    sso.add_account("erin", groups=["key-admins"])
    sso_log_in(page, live_server.url, "erin")
    # Someone else at the provider now calls themselves erin (another subject).
    sso.add_account("impostor", preferred_username="erin", email="imp@corp.example", sub="sub-2")
    other = browser.new_context()
    try:
        other_page = other.new_page()
        sso_log_in(other_page, live_server.url, "impostor")
        expect(other_page.get_by_role("alert")).to_contain_text(
            "The account erin belongs to another person at the single sign-on provider."
        )
    finally:
        other.close()
    assert [a.uid for a in SocialAccount.objects.filter(user__username="erin")] == ["sub-erin"]
    assert len(events("login_succeeded", "erin")) == 1


# As Entra ID provisions someone through SCIM, and deactivates them (tests/test_scim.py).
USERS = "/scim/v2/Users"
SCIM_JSON = "application/scim+json"
ENTRA_CREATE = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "erin@contoso.example",
    "active": True,
    "emails": [{"primary": True, "type": "work", "value": "erin@contoso.example"}],
    "name": {"familyName": "Example", "givenName": "Erin"},
}
ENTRA_DEACTIVATION = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
}


def test_a_person_scim_provisioned_signs_in_by_sso_until_scim_deactivates_them(
    sso, settings, page, live_server
):
    token = "test-only-scim-token-0123456789abcdefghij"
    settings.SCIM_TOKEN = token
    scim = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    made = scim.post(USERS, json.dumps(ENTRA_CREATE), content_type=SCIM_JSON)
    assert made.status_code == 201
    # As Entra ID signs them in: the UPN as preferred_username, no email_verified.
    sso.add_account(
        "erin",
        preferred_username="erin@contoso.example",
        email="erin@contoso.example",
        email_verified=None,
        groups=["key-admins"],
    )

    sso_log_in(page, live_server.url, "erin")

    expect(page.get_by_role("link", name="Users")).to_be_visible()
    erin = get_user_model().objects.get(username="erin@contoso.example")
    assert roles_of(erin) == {"admin"}  # SCIM made staff; the provider's claim made admin
    assert SocialAccount.objects.get(user=erin).uid == "sub-erin"

    # She leaves: the provider deactivates her through SCIM. The portal's session is gone...
    gone = scim.patch(
        f"{USERS}/{json.loads(made.content)['id']}",
        json.dumps(ENTRA_DEACTIVATION),
        content_type=SCIM_JSON,
    )
    assert gone.status_code == 200
    page.goto(live_server.url + "/keys/")
    expect(page).to_have_url(re.compile("/login/"))
    # ...and single sign-on does not bring her back, whatever the provider still says.
    sso_log_in(page, live_server.url, "erin")
    expect(page.get_by_role("alert")).to_contain_text(
        "The account erin@contoso.example is deactivated."
    )


# --- "Confirm it's you" through the provider (portal/sso.py, keys/lib/reauth.py) -------------


def stale_window(settings) -> None:
    """Past the confirmation window: REAUTH_SECONDS shrunk to one second, then waited out (the
    provider keeps its real clock, so the portal's time is not moved)."""
    settings.REAUTH_SECONDS = 1
    time.sleep(1.5)


def fill_add_form(page, base: str, name: str) -> str:
    page.goto(base + "/keys/add/")
    page.get_by_label("Name").fill(name)
    expires_on = (local_date() + datetime.timedelta(days=60)).isoformat()
    page.get_by_label("Expiration date").fill(expires_on)
    page.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP 1").fill("192.0.2.10")
    page.get_by_role("group", name="APIs").get_by_label("Risks").check()
    return expires_on


def test_an_sso_person_confirms_at_the_provider_and_gets_the_form_back(
    sso, page, live_server, world, settings
):
    sso.add_account("gus", groups=["everyone"], name="Gus Smit")
    base = live_server.url
    errors = portal_console_errors(page, base)
    sso_log_in(page, base, "gus")
    expires_on = fill_add_form(page, base, "Held at the provider")
    stale_window(settings)

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    found: dict[str, list[str]] = {}
    check(page, "confirm-sso-asked", found)
    assert found["confirm-sso-asked"] == []
    settings.REAUTH_SECONDS = 900
    page.get_by_role("button", name="Confirm at your organisation's sign-in").click()
    # The provider asks again (prompt=login), though it remembers gus from the log-in.
    page.wait_for_url(re.compile("^" + re.escape(sso.issuer)))
    provider_log_in(page, "gus")

    expect(page.get_by_role("heading", name="Add API key")).to_be_visible()
    assert page.url.startswith(base + "/keys/add/")
    expect(page.get_by_text("What you typed is back")).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("Held at the provider")
    expect(page.get_by_label("Expiration date")).to_have_value(expires_on)
    expect(page.get_by_role("group", name="APIs").get_by_label("Risks")).to_be_checked()
    assert not ApiKey.objects.filter(name="Held at the provider").exists()
    page.get_by_role("button", name="Save").click()
    expect(
        page.get_by_text("This is the only time these credentials will be displayed")
    ).to_be_visible()

    assert ApiKey.objects.get(name="Held at the provider").owner.username == "gus"
    (confirmed,) = events("identity_confirmed", "gus")
    assert confirmed.details["method"] == "sso"
    assert len(events("login_succeeded", "gus")) == 1  # a confirmation, not another log-in
    assert [e for e in errors if "status of 400" not in e] == []


def test_another_person_at_the_provider_does_not_take_over_the_session(
    sso, page, live_server, world, settings
):
    sso.add_account("gus", groups=["everyone"])
    sso.add_account("hal", groups=["key-admins"])
    base = live_server.url
    sso_log_in(page, base, "gus")
    fill_add_form(page, base, "Never made")
    stale_window(settings)
    page.get_by_role("button", name="Save").click()
    settings.REAUTH_SECONDS = 900
    page.get_by_role("button", name="Confirm at your organisation's sign-in").click()
    page.wait_for_url(re.compile("^" + re.escape(sso.issuer)))
    provider_log_in(page, "hal")

    expect(page.get_by_role("heading", name="Single sign-on refused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("as someone else")
    # Neither hal nor gus is signed in here now: the session ended.
    page.goto(base + "/keys/add/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert not get_user_model().objects.filter(username="hal").exists()
    assert not ApiKey.objects.filter(name="Never made").exists()
    assert events("identity_confirmed", "gus") == []
    (refused,) = events("login_failed", "gus")
    assert refused.details["reason"] == "another person at the provider"


def test_a_provider_down_at_confirmation_gives_the_clear_page(
    sso, page, live_server, world, settings
):
    sso.add_account("gus", groups=["everyone"])
    base = live_server.url
    sso_log_in(page, base, "gus")
    fill_add_form(page, base, "Provider down")
    stale_window(settings)
    page.get_by_role("button", name="Save").click()
    settings.REAUTH_SECONDS = 900
    sso.stop()
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Confirm at your organisation's sign-in").click()

    assert navigation.value.status == 502
    expect(page.get_by_role("alert")).to_have_text(PROVIDER_DOWN)


def test_allauths_redirect_process_not_started_by_a_confirmation_logs_in_nobody(
    sso, page, live_server
):
    # allauth's "redirect" process comes back without a log-in; only a confirmation the
    # portal started may use it, never to link or create an account.
    sso.add_account("ivy", groups=["everyone"])
    page.goto(live_server.url + "/login/")
    page.evaluate(
        """() => { for (const form of document.forms) {
            if (form.action.includes('/accounts/oidc/')) form.action += '?process=redirect'; } }"""
    )
    page.get_by_role("button", name=f"Sign in with {LABEL}").click()
    page.wait_for_url(re.compile("^" + re.escape(sso.issuer)))
    provider_log_in(page, "ivy")

    expect(page.get_by_role("heading", name="Single sign-on refused")).to_be_visible()
    assert not get_user_model().objects.filter(username="ivy").exists()
    assert not SocialAccount.objects.exists()
