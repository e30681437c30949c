"""The key policy journey in Chromium: Carol sets approved networks, Alice asks for an address
outside them, Carol approves and denies on Requests, a stricter policy is reviewed in a dry
run and confirmed, a looser one lets the keys work again. Calls go over HTTP to the live
server; mails land in Django's outbox.

Screenshots of each step at 1200 and 320 px go to /tmp/shots-policy/ (SHOTS_POLICY overrides).
"""

import csv
import datetime
import io
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from keys import actions, tokens
from keys.api import usage
from keys.models import ApiKey, AuditEvent, KeyRequest
from tests.api_calls import basic
from tests.browser import console_errors, log_in, sideways_scroll

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("SHOTS_POLICY", "/tmp/shots-policy"))


def snap(page, name: str) -> None:
    """The page at 1200 and 320 px wide; it must not scroll sideways at 320."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1200, 900), (320, 700)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    assert sideways_scroll(page) == 0, name
    page.set_viewport_size({"width": 1200, "height": 900})


def whoami(base: str, key: ApiKey, password: str) -> int:
    """The status of GET /api/v1/whoami with the key, over HTTP from 127.0.0.1."""
    request = urllib.request.Request(
        base + "/api/v1/whoami", headers={"Authorization": basic(key.identifier, password)}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def last_refusal(key: ApiKey) -> str:
    usage.flush()
    event = (
        AuditEvent.objects.filter(key=key, action=AuditEvent.Action.USE_DENIED)
        .order_by("seq")
        .last()
    )
    return event.details["reason"] if event else ""


def set_networks(page, base: str, networks: str) -> None:
    page.goto(base + "/policy/")
    page.get_by_label("Approved networks").fill(networks)
    page.get_by_role("button", name="Save").click()


@pytest.fixture
def people(world):
    for name, person in world["people"].items():
        person.email = f"{name}@example.com"
        person.save()
    return world["people"]


def test_the_key_policy_journey(browser, live_server, world, people, settings):
    base = live_server.url
    admin = browser.new_context().new_page()
    staff = browser.new_context().new_page()
    said = [console_errors(admin), console_errors(staff)]
    log_in(admin, base, "carol")
    log_in(staff, base, "alice")

    # Carol approves the loopback network and the documentation IPv6 range.
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Key policy").click()
    expect(admin.get_by_role("heading", name="Key policy")).to_be_visible()
    admin.get_by_label("Approved networks").fill("127.0.0.0/8\n2001:db8::/32")
    snap(admin, "1-policy")
    admin.get_by_role("button", name="Save").click()
    expect(admin.get_by_role("status").filter(has_text="The key policy was saved")).to_be_visible()

    # Alice adds a key for a partner outside them: the form asks why.
    staff.goto(base + "/keys/add/")
    staff.get_by_label("Name").fill("Partner feed")
    staff.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP 1").fill("127.0.0.1")
    ips = staff.get_by_role("group", name="Allowed IPs")
    ips.get_by_role("button", name="Add", exact=True).click()
    ips.get_by_label("Allowed IP 2").fill("198.51.100.7")
    staff.get_by_role("group", name="APIs").get_by_label("Risks").check()
    staff.get_by_role("button", name="Save").first.click()
    justification = staff.get_by_label("Justification")
    expect(justification).to_be_visible()
    expect(staff.locator(".field.has-error").filter(has=justification)).to_contain_text(
        "198.51.100.7 lies outside the approved networks"
    )
    snap(staff, "2-justification")
    justification.fill("The partner's export server; agreed in ticket 4711.")
    staff.get_by_role("button", name="Save").first.click()
    expect(staff.get_by_role("heading", name="API key created")).to_be_visible()
    expect(staff.get_by_text("Pending approval.")).to_be_visible()
    password = staff.get_by_label("Password").input_value()  # shown once, as always
    key = ApiKey.objects.get(name="Partner feed")
    assert key.awaiting_approval and password.startswith("ckpw_")
    assert whoami(base, key, password) == 401
    assert last_refusal(key) == "pending_approval"
    [to_admins] = mail.outbox
    assert to_admins.to == ["carol@example.com"] and "ticket 4711" in to_admins.body

    staff.goto(base + f"/keys/{key.identifier}/")
    expect(staff.get_by_role("status").filter(has_text="Pending approval")).to_contain_text(
        "ticket 4711"
    )
    snap(staff, "3-pending-key")

    # Carol sees the request counted in the header, and approves it.
    admin.goto(base + "/keys/")
    requests_link = admin.get_by_role("link", name="Requests (1)")
    requests_link.click()
    expect(admin.get_by_role("heading", name="Partner feed")).to_be_visible()
    snap(admin, "4-requests")
    admin.get_by_role("button", name="Approve").click()
    expect(admin.get_by_role("status").filter(has_text="was approved")).to_be_visible()
    assert whoami(base, key, password) == 200
    assert mail.outbox[-1].to == ["alice@example.com"]

    # A second request, denied: a reason is required, and the new key is revoked.
    staff.goto(base + "/keys/add/")
    staff.get_by_label("Name").fill("Unknown host")
    staff.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP 1").fill("192.0.2.66")
    staff.get_by_role("group", name="APIs").get_by_label("Risks").check()
    staff.get_by_role("button", name="Save").first.click()
    staff.get_by_label("Justification").fill("Testing")
    staff.get_by_role("button", name="Save").first.click()
    expect(staff.get_by_role("heading", name="API key created")).to_be_visible()
    denied = ApiKey.objects.get(name="Unknown host")
    admin.goto(base + "/requests/")
    admin.get_by_role("button", name="Deny").click()
    expect(admin.get_by_role("alert")).to_contain_text("Give a reason for denying")
    admin.get_by_label("Reason").fill("No such partner")
    admin.get_by_role("button", name="Deny").click()
    expect(admin.get_by_role("status").filter(has_text="was denied")).to_be_visible()
    denied.refresh_from_db()
    assert denied.is_revoked and "No such partner" in mail.outbox[-1].body

    # An edit waiting for approval: the key keeps working with its old allowlist.
    nightly, nightly_password = actions.regenerate_password(
        world["active"], actor=people["alice"], overlap=datetime.timedelta(0)
    )
    staff.goto(base + f"/keys/{nightly.identifier}/edit/")
    staff.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP 1").fill("203.0.113.9")
    staff.get_by_role("button", name="Save").first.click()
    staff.get_by_label("Justification").fill("Moving to the new data centre")
    staff.get_by_role("button", name="Save").first.click()
    expect(
        staff.get_by_role("status").filter(has_text="The key was saved. Its new allowed IPs wait")
    ).to_be_visible()
    assert KeyRequest.objects.open().get().key == nightly
    assert whoami(base, nightly, nightly_password) == 200  # 127.0.0.1: the old allowlist
    assert tokens.is_password(nightly_password)

    # A stricter policy: the dry run lists the keys it leaves out and whose they are.
    set_networks(admin, base, "10.0.0.0/8")
    expect(admin.get_by_role("heading", name="Confirm the key policy")).to_be_visible()
    table = admin.locator(".left-out")
    expect(table).to_contain_text("Partner feed")
    expect(table).to_contain_text("Nightly export")
    expect(table).to_contain_text("alice")
    snap(admin, "5-dry-run")
    mails_before = len(mail.outbox)
    admin.get_by_role("button", name="Confirm: apply the policy").click()
    expect(admin.get_by_role("status").filter(has_text="out of policy")).to_be_visible()
    key.refresh_from_db()
    assert key.out_of_policy and not key.is_revoked
    assert whoami(base, key, password) == 401
    assert last_refusal(key) == "out_of_policy"
    assert [m.to for m in mail.outbox[mails_before:]] == [["alice@example.com"]]

    direct = settings.KEYS_TRUSTED_PROXIES, settings.KEYS_PROXY_HEADER
    settings.KEYS_TRUSTED_PROXIES = ["127.0.0.1"]
    settings.KEYS_PROXY_HEADER = "HTTP_X_FORWARDED_FOR"
    verify = urllib.request.Request(
        base + "/gateway/verify",
        headers={
            "Authorization": basic(key.identifier, password),
            "X-Forwarded-For": "127.0.0.1",
            "X-Original-Method": "GET",
            "X-Original-URI": "/api/v1/risks/",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(verify, timeout=10)
    assert refused.value.code == 401
    settings.KEYS_TRUSTED_PROXIES, settings.KEYS_PROXY_HEADER = direct

    admin.goto(base + "/all-keys/?q=Partner")
    expect(admin.get_by_role("row", name=re.compile("Partner feed"))).to_contain_text(
        "Out of policy"
    )
    snap(admin, "6-all-keys-out-of-policy")
    with admin.expect_download() as download:
        admin.goto(base + "/all-keys/")
        admin.get_by_role("link", name="Export inventory (CSV)").click()
    rows = csv.DictReader(io.StringIO(Path(download.value.path()).read_text()))
    assert {row["name"]: row["state"] for row in rows}["Partner feed"] == "out_of_policy"

    staff.goto(base + f"/keys/{key.identifier}/")
    expect(staff.get_by_role("status").filter(has_text="Out of policy")).to_be_visible()
    snap(staff, "7-out-of-policy-key")

    # A looser policy lets the keys work again.
    set_networks(admin, base, "")
    expect(admin.get_by_role("status").filter(has_text="work again")).to_be_visible()
    assert whoami(base, key, password) == 200
    # Only the answers that refuse on purpose: Deny without a reason (400).
    assert [e for errors in said for e in errors if "status of 400" not in e] == []
