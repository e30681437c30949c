"""The CERRIX journey in a real Chromium, by visible labels: log in, View profile, API Keys,
Add, fill the form (adding an Allowed IPs row through htmx), Save, read the credentials once.

Screenshots are kept in test-artifacts/ for people to look at.
"""

import base64
import datetime
import json
import re
import urllib.request

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from keys.models import ApiKey
from tests.browser import console_errors, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff_user(django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(
        username="alice", password="alice-portal-pw", first_name="Alice", last_name="Jansen"
    )
    user.groups.add(Group.objects.get(name="staff"))
    return user


def log_in(page, base_url):
    page.goto(base_url + "/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-portal-pw")
    page.get_by_role("button", name="Log in").click()


def test_create_a_key_as_the_cerrix_manual_describes(browser, live_server, staff_user):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, live_server.url)

    # In the top right corner, click on your name; select View profile.
    page.get_by_role("banner").get_by_text("Alice Jansen", exact=True).click()
    page.get_by_role("link", name="View profile").click()
    expect(page.get_by_role("heading", name="Profile")).to_be_visible()

    # In the left-hand menu, go to API Keys; click Add.
    page.get_by_role("navigation", name="Profile").get_by_role("link", name="API Keys").click()
    expect(page.get_by_role("heading", name="API Keys")).to_be_visible()
    page.get_by_role("link", name="Add", exact=True).click()

    page.get_by_label("Name").fill("Integration server")
    expiry = page.get_by_label("Expiration date")
    assert expiry.input_value()  # defaults to the latest allowed date

    ips = page.get_by_role("group", name="Allowed IPs")
    ips.get_by_label("Allowed IP").first.fill("127.0.0.1")
    page.evaluate("window.stillTheSamePage = true")
    ips.get_by_role("button", name="Add").click()  # htmx adds a row, no page load
    expect(ips.get_by_label("Allowed IP")).to_have_count(2)
    assert page.evaluate("window.stillTheSamePage === true")
    expect(ips.get_by_label("Allowed IP").first).to_have_value("127.0.0.1")
    ips.get_by_label("Allowed IP").nth(1).fill("2001:db8::/48")

    apis = page.get_by_role("group", name="APIs")
    apis.get_by_label("Risks").check()
    apis.get_by_label("Key risk indicators").check()
    shot(page, "journey-1-add-form")
    page.get_by_role("button", name="Save").click()

    expect(
        page.get_by_text("This is the only time these credentials will be displayed")
    ).to_be_visible()
    identifier = page.get_by_label("Identifier").input_value()
    password = page.get_by_label("Password").input_value()
    assert identifier.startswith("ckid_") and password.startswith("ckpw_")
    shot(page, "journey-2-credentials")

    key = ApiKey.objects.get(identifier=identifier)
    assert sorted(key.apis.values_list("slug", flat=True)) == ["kris", "risks"]
    assert sorted(key.allowed_ips.values_list("network", flat=True)) == [
        "127.0.0.1/32",
        "2001:db8::/48",
    ]

    # Copy buttons copy the value.
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = page.get_by_role("button", name="Copy password")
    copy.click()
    assert page.evaluate("navigator.clipboard.readText()") == password
    expect(copy).to_be_focused()  # the focus stays on the button
    expect(page.get_by_role("status").filter(has_text="Password copied.")).to_have_count(1)

    # The key works from an allowed IP (the test client is 127.0.0.1).
    assert call_api(live_server.url + "/api/v1/whoami", identifier, password) == {
        "identifier": identifier,
        "name": "Integration server",
        "apis": ["kris", "risks"],
        "expires_on": key.expires_on.isoformat(),
    }

    # Leaving the page and coming back to it never shows the password again: the page was
    # sent with no-store, so the browser has no copy to show.
    page.get_by_role("link", name="I have stored them").click()
    expect(page.get_by_text("Shown only once")).to_be_visible()
    try:
        page.go_back()
        page.wait_for_load_state("load")
    except PlaywrightError as error:
        # Chromium keeps no copy of a no-store answer to a POST: it shows its error page.
        assert "ERR_CACHE_MISS" in str(error)
        expect(page).to_have_url(re.compile(r"^chrome-error://"))
        page.wait_for_load_state("load")
    assert password not in page.content()
    page.goto(f"{live_server.url}/keys/{identifier}/")
    expect(page.get_by_text("Shown only once")).to_be_visible()
    assert password not in page.content()
    page.goto(f"{live_server.url}/keys/")
    expect(page.get_by_role("link", name="Integration server")).to_be_visible()
    shot(page, "journey-3-list")
    assert password not in page.content()
    assert not errors, errors  # no console errors (CSP violations included)
    context.close()


def call_api(url, identifier, password):
    token = base64.b64encode(f"{identifier}:{password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_allowed_ips_add_works_without_javascript(browser, live_server, staff_user):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server.url)
    page.goto(live_server.url + "/keys/add/")
    page.get_by_label("Name").fill("No script")
    ips = page.get_by_role("group", name="Allowed IPs")
    ips.get_by_label("Allowed IP").first.fill("192.0.2.10")
    ips.get_by_role("button", name="Add").click()  # a plain form post re-renders the form
    ips = page.get_by_role("group", name="Allowed IPs")
    expect(ips.get_by_label("Allowed IP")).to_have_count(2)
    expect(ips.get_by_label("Allowed IP").first).to_have_value("192.0.2.10")
    expect(page.get_by_label("Name")).to_have_value("No script")
    ips.get_by_label("Allowed IP").nth(1).fill("192.0.2.11")
    ips.get_by_role("button", name="Add", exact=True).click()
    ips = page.get_by_role("group", name="Allowed IPs")
    ips.get_by_label("Allowed IP 3").fill("192.0.2.12")
    ips.get_by_role("button", name="Remove allowed IP 1").click()  # a plain form post too
    ips = page.get_by_role("group", name="Allowed IPs")
    expect(ips.get_by_label("Allowed IP 1")).to_have_value("192.0.2.11")
    expect(ips.get_by_label("Allowed IP 2")).to_have_value("192.0.2.12")
    expect(page.get_by_role("button", name="30 days")).to_be_hidden()  # presets need script
    page.get_by_role("group", name="APIs").get_by_label("Controls").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Identifier")).to_have_value(re.compile(r"^ckid_"))
    key = ApiKey.objects.get(name="No script")
    assert sorted(key.allowed_ips.values_list("network", flat=True)) == [
        "192.0.2.11/32",
        "192.0.2.12/32",
    ]
    context.close()


def test_form_errors_show_next_to_their_fields_in_the_browser(browser, live_server, staff_user):
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_server.url)
    page.goto(live_server.url + "/keys/add/")
    page.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP").first.fill(
        "10.0.0.1/8"
    )
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#id_name_error")).to_contain_text("This field is required")
    expect(page.locator("#id_allowed_ips_error")).to_contain_text("did you mean 10.0.0.0/8?")
    expect(page.locator("#id_apis_error")).to_contain_text("Select at least one API")
    shot(page, "journey-4-errors")
    assert not ApiKey.objects.exists()
    context.close()


def test_a_failed_save_focuses_a_summary_whose_links_lead_to_each_field(
    browser, live_server, staff_user
):
    for width in (1280, 320):
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = context.new_page()
        errors = console_errors(page)
        log_in(page, live_server.url)
        page.goto(live_server.url + "/keys/add/")
        page.get_by_label("Allowed IP 1").fill("10.0.0.1/8")
        page.get_by_label("Allowed IP 1").press("Enter")

        expect(page).to_have_title(re.compile(r"^Error: Add API key"))
        summary = page.locator("[data-error-summary]")
        expect(summary).to_be_focused()
        expect(summary.get_by_role("link")).to_have_count(3)
        shot(page, f"add-errors-{width}")
        assert page.evaluate("document.documentElement.scrollWidth") <= width

        summary.get_by_role("link", name="APIs: Select at least one API.").click()
        expect(page.get_by_role("group", name="APIs").get_by_role("checkbox").first).to_be_focused()
        summary.get_by_role("link", name=re.compile("^Name:")).click()
        expect(page.get_by_label("Name")).to_be_focused()
        assert not errors, errors
        context.close()
    assert not ApiKey.objects.exists()


def test_changing_the_ip_rows_after_a_failed_save_clears_their_stale_errors(
    browser, live_server, staff_user
):
    context = browser.new_context()
    page = context.new_page()
    errors = console_errors(page)
    log_in(page, live_server.url)
    page.goto(live_server.url + "/keys/add/")
    page.get_by_label("Name").fill("Stale")
    ips = page.get_by_role("group", name="Allowed IPs")
    ips.get_by_label("Allowed IP 1").fill("nonsense")
    page.get_by_role("button", name="Save").first.click()
    summary = page.locator("[data-error-summary]")
    expect(summary.get_by_role("link")).to_have_count(2)  # Allowed IPs and APIs
    expect(page.locator("#id_allowed_ips_error")).to_contain_text("“nonsense” is not an IPv4")

    ips.get_by_role("button", name="Add", exact=True).click()
    expect(ips.get_by_label("Allowed IP 2")).to_be_focused()
    expect(page.locator("#id_allowed_ips_error")).to_have_count(0)
    expect(ips.get_by_label("Allowed IP 1")).not_to_have_attribute("aria-invalid", "true")
    expect(ips.get_by_label("Allowed IP 1")).to_have_value("nonsense")  # kept, not judged
    expect(summary.get_by_role("link")).to_have_count(1)
    expect(summary.get_by_role("link")).to_have_text("APIs: Select at least one API.")
    expect(summary.get_by_role("heading")).to_have_text("There is a problem with what you entered")
    expect(page).to_have_title(re.compile(r"^Error: "))

    # When the rows were the only problem, the summary and the title's "Error:" go too.
    page.get_by_role("group", name="APIs").get_by_label("Risks").check()
    page.get_by_role("button", name="Save").first.click()
    expect(summary.get_by_role("link")).to_have_count(1)
    ips.get_by_role("button", name="Remove allowed IP 1").click()
    expect(page.locator("[data-error-summary]")).to_have_count(0)
    expect(page).to_have_title("Add API key · Key Portal")
    assert not errors, errors
    context.close()


def test_the_add_form_helps_enter_saves_rows_are_removed_presets_and_my_ip_fill(
    browser, live_server, staff_user
):
    from keys.models import local_date

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = console_errors(page)
    log_in(page, live_server.url)
    page.goto(live_server.url + "/keys/add/")
    page.evaluate("window.stillTheSamePage = true")

    # Presets put their date in the date input.
    expiry = page.get_by_label("Expiration date")
    page.get_by_role("button", name="90 days").click()
    in_90_days = local_date() + datetime.timedelta(days=90)
    expect(expiry).to_have_value(in_90_days.isoformat())
    page.get_by_role("button", name="30 days").click()
    expect(expiry).to_have_value((local_date() + datetime.timedelta(days=30)).isoformat())
    expect(page.get_by_text("Valid through the end of this day, Europe/Amsterdam.")).to_be_visible()

    # "Use my current IP" fills the empty row with the address the portal sees.
    ips = page.get_by_role("group", name="Allowed IPs")
    ips.get_by_role("button", name="Use my current IP (127.0.0.1)").click()
    expect(ips.get_by_label("Allowed IP 1")).to_have_value("127.0.0.1")
    expect(ips.get_by_label("Allowed IP 1")).to_be_focused()

    # Add two rows, then remove the middle one: the rows are renumbered, the focus moves on.
    ips.get_by_role("button", name="Add", exact=True).click()
    expect(ips.get_by_label("Allowed IP 2")).to_be_focused()
    ips.get_by_label("Allowed IP 2").fill("192.0.2.99")
    ips.get_by_role("button", name="Add", exact=True).click()
    ips.get_by_label("Allowed IP 3").fill("2001:db8::/48")
    ips.get_by_role("button", name="Remove allowed IP 2").click()
    expect(ips.get_by_label(re.compile(r"^Allowed IP \d$"))).to_have_count(2)
    expect(ips.get_by_label("Allowed IP 2")).to_have_value("2001:db8::/48")
    expect(ips.get_by_label("Allowed IP 2")).to_be_focused()
    assert page.evaluate("window.stillTheSamePage === true")  # htmx, no page load

    page.get_by_role("group", name="APIs").get_by_label("Risks").check()
    page.get_by_label("Description").fill("Exports risks nightly; run by the BI team.")
    shot(page, "add-helped-1280")

    # Enter in a text field saves; it does not add a row.
    page.get_by_label("Name").fill("Entered")
    page.get_by_label("Name").press("Enter")
    expect(page.get_by_label("Identifier")).to_have_value(re.compile(r"^ckid_"))
    key = ApiKey.objects.get(name="Entered")
    assert key.expires_on == local_date() + datetime.timedelta(days=30)
    assert key.description == "Exports risks nightly; run by the BI team."
    assert sorted(key.allowed_ips.values_list("network", flat=True)) == [
        "127.0.0.1/32",
        "2001:db8::/48",
    ]
    assert not errors, errors
    context.close()


def test_regenerate_and_renew_from_the_key_page(browser, live_server, staff_user):
    from keys import actions
    from keys.models import Api, latest_expiry_for, local_date

    key, old_password = actions.create_key(
        owner=staff_user,
        name="Yearly export",
        expires_on=latest_expiry_for(local_date()),
        networks=["127.0.0.1"],
        apis=list(Api.objects.filter(slug="risks")),
    )
    context = browser.new_context()
    page = context.new_page()
    errors = console_errors(page)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/keys/{key.identifier}/")

    page.get_by_role("link", name="Regenerate password").click()
    page.get_by_label("1 hour").check()
    page.get_by_role("button", name="Regenerate password").click()
    expect(page.get_by_role("heading", name="New password")).to_be_visible()
    new_password = page.get_by_label("Password").input_value()
    assert new_password != old_password
    assert page.get_by_label("Identifier").input_value() == key.identifier
    shot(page, "lifecycle-1-regenerated")
    whoami = f"{live_server.url}/api/v1/whoami"
    assert call_api(whoami, key.identifier, new_password)["identifier"] == key.identifier
    assert call_api(whoami, key.identifier, old_password)["identifier"] == key.identifier

    page.goto(f"{live_server.url}/keys/{key.identifier}/")
    notice = page.get_by_role("status").filter(has_text="Previous password valid until")
    expect(notice).to_be_visible()
    page.get_by_role("link", name="Renew").click()
    page.get_by_label("Keep the old key working for (days)").fill("7")
    page.get_by_role("button", name="Renew").click()
    expect(page.get_by_role("heading", name="API key renewed")).to_be_visible()
    renewed_identifier = page.get_by_label("Identifier").input_value()
    renewed_password = page.get_by_label("Password").input_value()
    assert call_api(whoami, renewed_identifier, renewed_password)["name"] == "Yearly export"
    shot(page, "lifecycle-2-renewed")
    page.get_by_role("link", name=key.identifier).click()
    expect(page.get_by_role("status").filter(has_text="Replaced by")).to_be_visible()
    shot(page, "lifecycle-3-replaced")
    assert not errors, errors
    context.close()
