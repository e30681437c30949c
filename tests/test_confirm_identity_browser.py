"""Confirm it's you in a real Chromium (docs/design.md §10): a filled-in Add form, saved after
the window, asks for the password and comes back filled in; the Django admin shows what was
held and sends it on one press. Time moves with time_machine (the live server runs in this
process, so it moves there too).
"""

import datetime

import pytest
import time_machine
from django.conf import settings
from playwright.sync_api import expect

from keys.models import Api, ApiKey, AuditEvent, local_date
from tests.browser import check, console_errors, log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def past_the_window() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(
        seconds=settings.REAUTH_SECONDS + 5
    )


def test_a_filled_in_add_form_comes_back_filled_in_after_confirming(browser, live_server, world):
    page = browser.new_context().new_page()
    errors = console_errors(page)
    log_in(page, live_server.url, "alice")
    page.goto(live_server.url + "/keys/add/")
    page.get_by_label("Name").fill("Held over lunch")
    expires_on = (local_date() + datetime.timedelta(days=60)).isoformat()
    page.get_by_label("Expiration date").fill(expires_on)
    ips = page.get_by_role("group", name="Allowed IPs")
    ips.get_by_label("Allowed IP 1").fill("192.0.2.10")
    ips.get_by_role("button", name="Add").click()
    expect(ips.get_by_label("Allowed IP")).to_have_count(2)
    ips.get_by_label("Allowed IP 2").fill("198.51.100.0/24")
    apis = page.get_by_role("group", name="APIs")
    apis.get_by_label("Risks").check()
    apis.get_by_label("Key risk indicators").check()
    before = ApiKey.objects.count()

    with time_machine.travel(past_the_window(), tick=True):
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
        assert ApiKey.objects.count() == before
        shot(page, "confirm-1-asked")
        found: dict[str, list[str]] = {}
        check(page, "confirm-asked", found)
        assert found["confirm-asked"] == []
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("alert")).to_contain_text("not your password")
        page.get_by_label("Password").fill("alice-portal-pw")
        page.get_by_role("button", name="Confirm").click()

        expect(page.get_by_role("heading", name="Add API key")).to_be_visible()
        expect(page.get_by_text("What you typed is back")).to_be_visible()
        expect(page.get_by_label("Name")).to_have_value("Held over lunch")
        expect(page.get_by_label("Expiration date")).to_have_value(expires_on)
        expect(ips.get_by_label("Allowed IP 1")).to_have_value("192.0.2.10")
        expect(ips.get_by_label("Allowed IP 2")).to_have_value("198.51.100.0/24")
        expect(apis.get_by_label("Risks")).to_be_checked()
        expect(apis.get_by_label("Key risk indicators")).to_be_checked()
        assert ApiKey.objects.count() == before  # not sent until the person says so
        shot(page, "confirm-2-form-back")
        page.get_by_role("button", name="Save").click()
        expect(
            page.get_by_text("This is the only time these credentials will be displayed")
        ).to_be_visible()

    made = ApiKey.objects.get(name="Held over lunch")
    assert sorted(str(entry) for entry in made.allowed_ips.all()) == [
        "192.0.2.10",
        "198.51.100.0/24",
    ]
    assert sorted(made.apis.values_list("slug", flat=True)) == ["kris", "risks"]
    assert made.expires_on.isoformat() == expires_on
    assert AuditEvent.objects.filter(action="identity_confirmed").count() == 1
    assert [e for e in errors if "status of 400" not in e] == []


def test_a_django_admin_change_is_shown_then_sent_after_confirming(browser, live_server, world):
    carol = world["people"]["carol"]
    carol.is_staff = True
    carol.save()
    api = Api.objects.get(slug="kris")
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "carol")
    page.goto(live_server.url + f"/admin/keys/api/{api.pk}/change/")
    page.get_by_label("Name:").fill("KRIs")

    with time_machine.travel(past_the_window(), tick=True):
        page.get_by_role("button", name="Save", exact=True).click()
        page.get_by_label("Password").fill("carol-portal-pw")
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("heading", name="Send your change again")).to_be_visible()
        expect(page.get_by_role("cell", name="KRIs", exact=True)).to_be_visible()
        api.refresh_from_db()
        assert api.name == "Key risk indicators"
        found: dict[str, list[str]] = {}
        check(page, "admin-send-again", found, axe_at_320=True)
        assert found["admin-send-again"] == []
        page.get_by_role("button", name="Send it").click()
        expect(page.get_by_text("was changed successfully")).to_be_visible()

    api.refresh_from_db()
    assert api.name == "KRIs"


@pytest.fixture
def base(live_server) -> str:
    """The live server as http://localhost:PORT: WebAuthn wants a domain, not 127.0.0.1."""
    return live_server.url.replace("127.0.0.1", "localhost")


def test_a_passkey_confirms_and_the_typed_reason_comes_back(browser, base, world):
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True}
    options.update({"hasUserVerification": True, "isUserVerified": True})
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    log_in(page, base, "carol")
    page.goto(base + "/accounts/2fa/")
    page.get_by_role("link", name="Add a passkey").click()
    page.get_by_label("Password").fill("carol-portal-pw")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_label("Name").fill("Laptop")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_label("Unused codes")).to_be_visible()
    page.goto(base + "/users/bob/deactivate/")
    page.get_by_label("Reason").fill("Left for another team")
    bob = world["people"]["bob"]

    with time_machine.travel(past_the_window(), tick=True):
        page.get_by_role("button", name="Deactivate").click()
        expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
        bob.refresh_from_db()
        assert bob.is_active
        page.get_by_role("link", name="Confirm with your passkey").click()
        page.get_by_role("button", name="Use a security key").click()

        expect(page.get_by_role("heading", name="Deactivate user")).to_be_visible()
        expect(page.get_by_label("Reason")).to_have_value("Left for another team")
        bob.refresh_from_db()
        assert bob.is_active  # not until she presses Deactivate again
        page.get_by_role("button", name="Deactivate").click()
        expect(page.get_by_text("bob was deactivated")).to_be_visible()

    bob.refresh_from_db()
    assert not bob.is_active
    confirmed = AuditEvent.objects.filter(action="identity_confirmed").order_by("seq")
    assert [event.details["method"] for event in confirmed] == ["password", "passkey"]
    context.close()
