"""Passkeys in a real Chromium with its virtual authenticator (the DevTools WebAuthn domain):
an admin who must have a second factor adds a passkey, then logs in with password and passkey.

WebAuthn needs a secure context and a domain as relying party: the live server is driven as
http://localhost:PORT, never 127.0.0.1."""

import re

import pytest
from playwright.sync_api import expect

from keys.models import AuditEvent
from tests.browser import check, console_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def base(live_server) -> str:
    url = live_server.url.replace("127.0.0.1", "localhost")
    assert url.startswith("http://localhost:")
    return url


def with_authenticator(browser):
    """A browser context and page with a platform authenticator that verifies its user."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return context, page, cdp, authenticator["authenticatorId"]


def log_in_with_password(page, base):
    page.goto(base + "/login/")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("carol-portal-pw")
    page.get_by_role("button", name="Log in").click()


def test_a_passkey_is_added_and_used_to_log_in(browser, base, world, settings):
    settings.MFA_REQUIRED_ROLES = frozenset({"admin"})
    context, page, cdp, authenticator_id = with_authenticator(browser)
    errors = console_errors(page)
    found: dict[str, list[str]] = {}

    # Carol must have a second factor: her first page is Sign-in security.
    log_in_with_password(page, base)
    expect(page).to_have_url(re.compile(r"/accounts/2fa/$"))
    expect(page.get_by_text("Your role (admin) needs a second factor")).to_be_visible()
    check(page, "sign-in-security-required", found)
    page.get_by_role("link", name="Add a passkey").click()
    # Adding a factor first asks to confirm it's her.
    page.get_by_label("Password").fill("carol-portal-pw")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Add a passkey")).to_be_visible()
    check(page, "add-passkey", found)
    page.get_by_label("Name").fill("Laptop")
    page.get_by_role("button", name="Add", exact=True).click()
    # The passkey's recovery codes, shown once.
    expect(page).to_have_url(re.compile(r"/accounts/2fa/recovery-codes/"))
    expect(page.get_by_label("Unused codes")).to_be_visible()
    check(page, "recovery-codes-shown", found)
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(credentials["credentials"]) == 1
    page.goto(base + "/all-keys/")
    expect(page.get_by_role("heading", name="All keys")).to_be_visible()

    page.locator(".usermenu summary").click()
    page.get_by_role("button", name="Log out").click()
    log_in_with_password(page, base)
    expect(page.get_by_role("heading", name="Second factor")).to_be_visible()
    check(page, "second-factor", found)
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(re.compile(r"/keys/$"))

    added = AuditEvent.objects.get(action="factor_added", owner__username="carol")
    assert added.details == {"user": "carol", "factor": "passkey", "name": "Laptop"}
    last = AuditEvent.objects.filter(action="login_succeeded").order_by("-seq").first()
    assert last.details["second_factor"] == "passkey"
    context.close()
    assert found == {state: [] for state in found}
    assert errors == []
