"""Every portal page state, as the role that uses it, checked by axe-core in Chromium (WCAG
2.0/2.1/2.2 A and AA, and best practices), and at 320 px wide for sideways scrolling.

axe-core comes bundled in the axe-playwright-python package; screenshots of every state at
1280 px and 320 px go to test-artifacts/a11y-*.png for people to look at.
"""

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import time_machine
from playwright.sync_api import expect

from keys import actions
from keys.audit import chain as audit
from keys.models import (
    Api,
    ApiKey,
    AuditEvent,
    AuditHead,
    ChainVerification,
    StreamDestination,
    latest_expiry_for,
    local_date,
)
from tests.browser import check, console_errors, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# --- every page state, one test each ---------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A page state: who is signed in (None: nobody) and how to get there, a path or a
    function(page, base, places). `places` fills a path's {names}: world's keys, today, and
    with `crowded` more events and keys than a page shows, so the pagers are there too."""

    name: str
    persona: str | None
    go: str | Callable
    crowded: bool = False


def _failed_log_in(page, base, places):
    page.goto(base + "/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()


def _add_rows(page, base, places):
    page.goto(base + "/keys/add/")
    page.get_by_role("group", name="Allowed IPs").get_by_role("button", name="Add").click()
    page.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP 2").wait_for()


def _add_errors(page, base, places):
    page.goto(base + "/keys/add/")
    page.get_by_role("button", name="Save").first.click()


def _edit_errors(page, base, places):
    page.goto(base + f"/keys/{places['active']}/edit/")
    page.get_by_label("Name").fill("")
    page.get_by_role("button", name="Save").first.click()


def _wrong_confirmation(page, base, places):
    page.goto(base + "/confirm/?next=/keys/add/")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Confirm").click()


def _confirm_with_a_code_too(page, base, places):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from portal.models import User

    TOTP.activate(User.objects.get(username="alice"), generate_totp_secret())
    page.goto(base + "/confirm/?next=/keys/add/")
    page.get_by_label("Code from your authenticator app").fill("12345678")
    page.get_by_role("button", name="Confirm with the code").click()


def _created(page, base, places):
    page.goto(base + "/keys/add/")
    page.get_by_label("Name").fill("Accessible")
    page.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP 1").fill("127.0.0.1")
    page.get_by_role("group", name="APIs").get_by_label("Risks").check()
    page.get_by_role("button", name="Save").first.click()


def _saved_message(page, base, places):  # "The key was saved." on the key page
    page.goto(base + f"/keys/{places['active']}/edit/")
    page.get_by_role("button", name="Save").first.click()


def _verified(page, base, places):
    page.goto(base + "/audit/")
    page.get_by_role("button", name="Verify now").click()
    # The message is put in the live region just after the load, to be announced.
    expect(page.get_by_role("status").filter(has_text="The chain is intact:")).to_be_visible()


def _verification_broken(page, base, places):
    audit.keep_verification(  # as a check that found the chain broken records it
        ChainVerification(
            by="manage.py verify_audit",
            intact=False,
            events=AuditEvent.objects.count(),
            broken_at=2,
            reason="its content does not match its hash",
        )
    )
    page.goto(base + "/audit/")


def _confirmed(page, go: str):
    """Open `go`, confirming it's you with the password first (adding a factor asks)."""
    page.goto(go)
    page.get_by_label("Password").fill("alice-portal-pw")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state("load")


def _totp_setup(page, base, places):
    _confirmed(page, base + "/accounts/2fa/totp/activate/")


def _totp_setup_wrong_code(page, base, places):
    _totp_setup(page, base, places)
    page.get_by_label("Authenticator code").fill("12")
    page.get_by_role("button", name="Activate").click()


def _add_passkey(page, base, places):
    _confirmed(page, base + "/accounts/2fa/webauthn/add/")


def _with_totp(username: str) -> str:
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from portal.models import User

    user = User.objects.get(username=username)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    RecoveryCodes.activate(user)
    return secret


def _second_factor(page, base, places):
    _with_totp("alice")
    log_in(page, base, "alice")


def _second_factor_wrong_code(page, base, places):
    _second_factor(page, base, places)
    page.get_by_label("Code").fill("000000x")
    page.get_by_role("button", name="Log in").click()


def _sign_in_security_on(page, base, places):
    _with_totp("alice")
    page.goto(base + "/accounts/2fa/")


def _recovery_codes_again(page, base, places):
    _with_totp("alice")
    _confirmed(page, base + "/accounts/2fa/recovery-codes/generate/")


def _bulk_without_reason(page, base, places):
    page.goto(base + "/all-keys/revoke/?owner=alice")
    page.get_by_role("button", name="Revoke 1 key").click()


def _destinations() -> list[StreamDestination]:
    """A webhook that last failed and a syslog destination, as an admin would have set up."""
    return [
        StreamDestination.objects.create(
            name="Splunk HEC",
            url="https://127.0.0.1:9/services/collector/raw",  # refused at once
            secret="x" * 64,
            headers={"Authorization": "Splunk not-a-real-token"},
            failed=3,
            last_error="connection refused",
            last_error_at=datetime.datetime.now(tz=datetime.UTC),
        ),
        StreamDestination.objects.create(
            name="rsyslog relay",
            kind=StreamDestination.Kind.SYSLOG_TLS,
            host="logs.example.com",
            port=6514,
            last_acked_seq=3,
            sent=3,
        ),
    ]


def _streaming(page, base, places):
    _destinations()
    page.goto(base + "/audit/streaming/")


def _stream_edit(page, base, places):
    page.goto(base + f"/audit/streaming/{_destinations()[0].identifier}/")


def _stream_remove(page, base, places):
    page.goto(base + f"/audit/streaming/{_destinations()[0].identifier}/remove/")


def _stream_add_errors(page, base, places):
    page.goto(base + "/audit/streaming/add/")
    page.get_by_label("URL").fill("http://siem.example.com/in")
    page.get_by_role("button", name="Save").click()


def _stream_secret(page, base, places):
    page.goto(base + "/audit/streaming/add/")
    page.get_by_label("Name").fill("SIEM")
    page.get_by_label("URL").fill("https://siem.example.com/in")
    page.get_by_role("button", name="Save").click()


def _stream_replay_error(page, base, places):
    page.goto(base + f"/audit/streaming/{_destinations()[1].identifier}/")
    page.get_by_label("Replay from sequence number").fill("99")
    page.get_by_role("button", name="Replay").click()


def _stream_tested(page, base, places):
    _destinations()
    page.goto(base + "/audit/streaming/")
    page.get_by_role("button", name="Send test to Splunk HEC").click()
    expect(page.get_by_role("status").filter(has_text="failed")).to_be_visible()


def _approve_only_loopback() -> None:
    carol = ApiKey.objects.get(name="Nightly export").owner._meta.model.objects.get(
        username="carol"
    )
    actions.change_policy(
        actor=carol, approved_networks=["127.0.0.0/8"], max_lifetime_days=365, api_roles={}
    )


def _pending_key() -> ApiKey:
    _approve_only_loopback()
    alice = ApiKey.objects.get(name="Nightly export").owner
    key, _ = actions.create_key(
        owner=alice,
        name="Partner feed",
        expires_on=latest_expiry_for(local_date()),
        networks=["198.51.100.7"],
        apis=list(Api.objects.filter(slug="risks")),
        justification="The partner's export server",
    )
    return key


def _policy_dry_run(page, base, places):
    page.goto(base + "/policy/")
    page.get_by_label("Approved networks").fill("10.0.0.0/8")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Confirm the key policy").wait_for()


def _policy_errors(page, base, places):
    page.goto(base + "/policy/")
    page.get_by_label("Approved networks").fill("10.0.0.1/8")
    page.get_by_role("button", name="Save").click()


def _add_justification(page, base, places):
    _approve_only_loopback()
    page.goto(base + "/keys/add/")
    page.get_by_label("Name").fill("Partner feed")
    page.get_by_role("group", name="Allowed IPs").get_by_label("Allowed IP 1").fill("198.51.100.7")
    page.get_by_role("group", name="APIs").get_by_label("Risks").check()
    page.get_by_role("button", name="Save").first.click()
    page.get_by_label("Justification").wait_for()


def _detail_pending(page, base, places):
    page.goto(base + f"/keys/{_pending_key().identifier}/")


def _requests(page, base, places):
    _pending_key()
    page.goto(base + "/requests/")


def _deny_without_reason(page, base, places):
    _requests(page, base, places)
    page.get_by_role("button", name="Deny").click()


STATES = [
    State("login", None, "/login/"),
    State("login-after-idle-time-out", None, "/login/?next=/keys/&ended=idle"),
    State("login-failed", None, _failed_log_in),
    State("sign-up-closed", None, "/accounts/signup/"),
    State("sign-in-security", "alice", "/accounts/2fa/"),
    State("sign-in-security-on", "alice", _sign_in_security_on),
    State("confirm-its-you", "alice", "/accounts/reauthenticate/?next=/accounts/2fa/"),
    State("totp-setup", "alice", _totp_setup),
    State("totp-setup-wrong-code", "alice", _totp_setup_wrong_code),
    State("add-passkey", "alice", _add_passkey),
    State("passkeys-none", "alice", "/accounts/2fa/webauthn/"),
    State("recovery-codes-again", "alice", _recovery_codes_again),
    State("second-factor", None, _second_factor),
    State("second-factor-wrong-code", None, _second_factor_wrong_code),
    State("profile", "alice", "/profile/"),
    State("keys-full", "alice", "/keys/"),
    State("add", "alice", "/keys/add/"),
    State("add-as-admin", "carol", "/keys/add/"),  # Audit history: a select of Read only
    State("detail-active", "alice", "/keys/{active}/"),
    State("detail-revoked", "alice", "/keys/{revoked}/"),
    State("detail-expired", "alice", "/keys/{expired}/"),
    State("edit", "alice", "/keys/{active}/edit/"),
    State("revoke-own", "alice", "/keys/{active}/revoke/"),
    State("regenerate", "alice", "/keys/{active}/regenerate/"),
    State("renew", "alice", "/keys/{active}/renew/"),
    State("forbidden-403", "alice", "/all-keys/"),
    State("not-found-404", "alice", "/keys/ckid_nothing/"),
    State("add-rows", "alice", _add_rows),
    State("add-errors", "alice", _add_errors),
    State("edit-errors", "alice", _edit_errors),
    State("created", "alice", _created),
    State("confirm", "alice", "/confirm/?next=/keys/add/"),
    State("confirm-wrong-password", "alice", _wrong_confirmation),
    State("confirm-wrong-code", "alice", _confirm_with_a_code_too),
    State("message", "alice", _saved_message),
    State("keys-empty", "bob", "/keys/"),
    State("all-keys", "carol", "/all-keys/", crowded=True),
    State("all-keys-filtered", "carol", "/all-keys/?status=active&q=export"),
    State("all-keys-by-network", "carol", "/all-keys/?ips=10.0.0.0/8&ips_match=outside"),
    State("all-keys-bad-filter", "carol", "/all-keys/?status=nonsense&expiring_within=-1"),
    State("all-keys-paged", "carol", "/all-keys/?before={fiftieth}", crowded=True),
    State("revoke-with-reason", "carol", "/keys/{active}/revoke/"),
    State("all-keys-by-owner", "carol", "/all-keys/?owner=alice"),
    State("all-keys-revoke-preview", "carol", "/all-keys/revoke/?owner=alice&ips=127.0.0.0/8"),
    State("all-keys-revoke-without-reason", "carol", _bulk_without_reason),
    State("all-keys-revoke-without-filter", "carol", "/all-keys/revoke/"),
    State("all-keys-revoke-nothing-matches", "carol", "/all-keys/revoke/?owner=bob"),
    State("users", "carol", "/users/", crowded=True),
    State("deactivate", "carol", "/users/bob/deactivate/"),
    State("admin-detail", "carol", "/keys/{active}/"),
    State("policy", "carol", "/policy/"),
    State("policy-errors", "carol", _policy_errors),
    State("policy-dry-run", "carol", _policy_dry_run),
    State("requests-empty", "carol", "/requests/"),
    State("requests", "carol", _requests),
    State("requests-deny-without-reason", "carol", _deny_without_reason),
    State("add-justification", "alice", _add_justification),
    State("detail-pending", "alice", _detail_pending),
    State("audit-history", "dave", "/audit/", crowded=True),
    State("audit-filtered", "dave", "/audit/?action=key_created", crowded=True),
    State("audit-bad-filter", "dave", "/audit/?date_from=1000-01-01"),
    State("audit-paged", "dave", "/audit/?before={older}", crowded=True),
    State("auditor-keys", "dave", "/keys/"),
    State(
        "audit-by-key-name-and-part-of-a-user",
        "dave",
        "/audit/?key=nightly%20export&user=LIC",
        crowded=True,
    ),
    State(
        "audit-last-7-days",
        "dave",
        "/audit/?date_from={week_ago}&date_to={today}",
        crowded=True,
    ),
    State("audit-verified", "dave", _verified),
    State("audit-verification-broken", "dave", _verification_broken),
    State("streaming-empty", "carol", "/audit/streaming/"),
    State("streaming-admin", "carol", _streaming),
    State("streaming-auditor", "dave", _streaming),
    State("stream-add", "carol", "/audit/streaming/add/"),
    State("stream-add-errors", "carol", _stream_add_errors),
    State("stream-secret-shown-once", "carol", _stream_secret),
    State("stream-edit", "carol", _stream_edit),
    State("stream-replay-error", "carol", _stream_replay_error),
    State("stream-remove", "carol", _stream_remove),
    State("stream-tested", "carol", _stream_tested),
]


def _crowd(world) -> dict[str, object]:
    """More events than a history page holds and more keys (Carol's) than All keys shows on
    a page; the places of their second pages."""
    active = world["active"]
    audit.record_many(
        [
            dict(
                action="key_used",
                key=active,
                actor_label=f"api:{active.identifier}",
                details={"uses": n, "day": local_date().isoformat()},
            )
            for n in range(1, 56)
        ]
    )
    head = AuditHead.objects.get(pk=1).seq
    for n in range(51):
        actions.create_key(
            owner=world["people"]["carol"], name=f"Carol {n}",
            expires_on=latest_expiry_for(local_date()), networks=["127.0.0.1"],
            apis=list(Api.objects.filter(slug="risks")),
        )  # fmt: skip
    fiftieth = ApiKey.objects.order_by("-created_at", "-pk")[49].identifier
    return {"fiftieth": fiftieth, "older": head - 49}


@pytest.mark.parametrize("state", STATES, ids=[state.name for state in STATES])
def test_the_page_state_has_no_axe_violation_and_fits_320_px(state, browser, live_server, world):
    base = live_server.url
    places = {name: world[name].identifier for name in ("active", "revoked", "expired")}
    places.update(today=local_date(), week_ago=local_date() - datetime.timedelta(days=6))
    if state.crowded:
        places.update(_crowd(world))
    context = browser.new_context()
    page = context.new_page()
    errors = console_errors(page)
    if state.persona:
        log_in(page, base, state.persona)
    if callable(state.go):
        state.go(page, base, places)
    else:
        page.goto(base + state.go.format(**places))
    found: dict[str, list[str]] = {}
    check(page, state.name, found)
    context.close()
    assert found[state.name] == []
    # The bad-filter (400), 403 and 404 states answer so on purpose; anything else is a fault.
    on_purpose = ("status of 400", "status of 403", "status of 404")
    assert [e for e in errors if not any(status in e for status in on_purpose)] == []


def _revoke_selected(page, base, places):
    page.goto(base + "/admin/keys/apikey/")
    page.get_by_role("checkbox", name=re.compile("Nightly export")).check()
    page.get_by_role("combobox", name=re.compile("^Action")).select_option("revoke_selected")
    page.get_by_role("button", name="Go").click()
    page.get_by_label("Reason").wait_for()


ADMIN_STATES = [
    State("admin-index", "carol", "/admin/"),
    State("admin-keys", "carol", "/admin/keys/apikey/"),
    State("admin-key", "carol", "/admin/keys/apikey/{active_pk}/change/"),
    State("admin-audit-events", "carol", "/admin/keys/auditevent/"),
    State("admin-apis", "carol", "/admin/keys/api/"),
    State("admin-users", "carol", "/admin/portal/user/"),
    State("admin-user", "carol", "/admin/portal/user/{alice_pk}/change/"),
    State("admin-revoke-selected", "carol", _revoke_selected),
]


@pytest.mark.parametrize("state", ADMIN_STATES, ids=[state.name for state in ADMIN_STATES])
def test_the_django_admin_page_has_no_axe_violation_and_fits_320_px(
    state, browser, live_server, world
):
    carol = world["people"]["carol"]
    carol.is_staff = True  # as `adduser --role admin` does: the Django admin
    carol.save()
    places = {"active_pk": world["active"].pk, "alice_pk": world["people"]["alice"].pk}
    context = browser.new_context()
    page = context.new_page()
    errors = console_errors(page)
    log_in(page, live_server.url, state.persona)
    if callable(state.go):
        state.go(page, live_server.url, places)
    else:
        page.goto(live_server.url + state.go.format(**places))
    # Read before axe-core runs: it re-reads the admin's @import-ed stylesheet through a
    # <style> the CSP blocks, and that console error is axe's, not the page's.
    page_errors = list(errors)
    found: dict[str, list[str]] = {}
    check(page, state.name, found, axe_at_320=True)
    context.close()
    assert found[state.name] == []
    assert page_errors == []


def test_adding_a_row_after_a_failed_save_breaks_no_content_security_policy(
    browser, live_server, world
):
    page = browser.new_context().new_page()
    said = []  # every console message, warnings too: htmx's indicator <style> is inline
    page.on("console", lambda message: said.append(f"{message.type}: {message.text}"))
    log_in(page, live_server.url, "alice")
    page.goto(live_server.url + "/keys/add/")
    page.get_by_label("Name").press("Enter")
    expect(page).to_have_title(re.compile("^Error:"))
    ips = page.get_by_role("group", name="Allowed IPs")
    ips.get_by_role("button", name="Add", exact=True).click()
    ips.get_by_label("Allowed IP 2").wait_for()
    ips.get_by_role("button", name="Remove allowed IP 2").click()
    expect(ips.get_by_label(re.compile(r"^Allowed IP \d$"))).to_have_count(1)
    page.context.close()
    assert [line for line in said if "Content Security Policy" in line] == []


FOCUS_RING = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const style = getComputedStyle(el);
    const rect = el.getBoundingClientRect();
    const rgb = (text) => (text.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
    const lum = ([r, g, b]) => {
        const c = [r, g, b].map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    let bg = null;
    for (let node = el.parentElement; node; node = node.parentElement) {
        const color = getComputedStyle(node).backgroundColor;
        if (color && !color.startsWith("rgba(0, 0, 0, 0)") && color !== "transparent") {
            bg = rgb(color);
            break;
        }
    }
    bg = bg || [255, 255, 255];
    const outline = rgb(style.outlineColor);
    const [hi, lo] = [lum(outline), lum(bg)].sort((a, b) => b - a);
    return {
        tag: el.tagName, text: (el.innerText || el.value || "").slice(0, 30),
        visible: rect.width > 0 && rect.height > 0 && rect.bottom > 0 && rect.right > 0,
        outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
        contrast: (hi + 0.05) / (lo + 0.05),
    };
}"""


def tab_to(page, matches, limit=60) -> dict:
    """Press Tab until the focused element matches; check every stop's focus indicator."""
    for _ in range(limit):
        page.wait_for_load_state("load")
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_RING)
        assert focused is None or (
            focused["visible"] and focused["outline"] and focused["contrast"] >= 3
        ), focused
        if focused and matches(focused):
            return focused
    raise AssertionError("never reached the element by Tab")


def test_the_whole_journey_by_keyboard_alone(browser, live_server, world):
    base = live_server.url
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(base + "/login/")
    expect(page.get_by_label("Username")).to_be_focused()  # autofocus, before typing
    page.keyboard.type("alice")
    tab_to(page, lambda f: f["tag"] == "INPUT")
    page.keyboard.type("alice-portal-pw")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/keys/")

    tab_to(page, lambda f: f["tag"] == "SUMMARY")  # the user menu
    page.keyboard.press("Enter")
    assert page.evaluate("document.querySelector('.usermenu').open")
    page.keyboard.press("Escape")
    assert not page.evaluate("document.querySelector('.usermenu').open")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.keyboard.press("Enter")
    tab_to(page, lambda f: f["text"] == "View profile")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/profile/")
    tab_to(page, lambda f: f["text"] == "API Keys")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/keys/")
    tab_to(page, lambda f: f["text"] == "Add")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/keys/add/")

    tab_to(page, lambda f: f["tag"] == "INPUT")  # Name
    page.keyboard.type("Typed by keyboard")
    tab_to(page, lambda f: f["text"].startswith("Add"))  # Allowed IPs: add a row
    page.keyboard.press("Enter")
    page.get_by_label("Allowed IP 2").wait_for()
    page.keyboard.type("192.0.2.9")  # the new row has the focus
    tab_to(page, lambda f: f["text"].startswith("Remove"))  # remove it again
    page.keyboard.press("Enter")
    expect(page.locator(".ip-row")).to_have_count(1)
    page.get_by_label("Allowed IP 1").focus()
    page.keyboard.type("127.0.0.1")
    tab_to(page, lambda f: f["tag"] == "INPUT" and page.evaluate(
        "document.activeElement.type") == "checkbox")  # fmt: skip
    page.keyboard.press("Space")  # the first API
    page.get_by_label("Name").focus()
    page.keyboard.press("Enter")  # Enter saves
    page.get_by_label("Password").wait_for()

    tab_to(page, lambda f: f["text"] == "Copy identifier")
    page.keyboard.press("Enter")
    tab_to(page, lambda f: f["text"] == "Copy password")
    page.keyboard.press("Enter")
    assert page.evaluate("navigator.clipboard.readText()").startswith("ckpw_")
    tab_to(page, lambda f: f["text"].startswith("I have stored them"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["text"] == "Revoke")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["text"] == "Revoke" and f["tag"] == "BUTTON")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # The message is put in the live region just after the load, to be announced.
    expect(page.get_by_role("status").filter(has_text="was revoked")).to_be_visible()

    tab_to(page, lambda f: f["tag"] == "SUMMARY")
    page.keyboard.press("Enter")
    tab_to(page, lambda f: f["text"] == "Log out")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/login/" in page.url or "Log in" in page.content()
    context.close()


def test_least_privilege_regenerate_and_renew_by_keyboard_alone(browser, live_server, world):
    from django.test import Client

    from tests.api_calls import call

    alice = world["people"]["alice"]
    ninety_one_days_ago = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(days=91)
    with time_machine.travel(ninety_one_days_ago, tick=False):
        key, password = actions.create_key(
            owner=alice,
            name="Quarterly report",
            expires_on=latest_expiry_for(local_date()),
            networks=["127.0.0.1", "198.51.100.0/24"],
            apis=list(Api.objects.filter(slug__in=["risks", "kris"])),
        )
    # The integration, proved from an allowed address, then calls from one the key does not
    # allow: the door records the refusal, and the page offers to allow it.
    assert call(Client(), "/api/v1/whoami", key.identifier, password).status_code == 200
    refused = call(Client(), "/api/v1/whoami", key.identifier, password, REMOTE_ADDR="192.0.2.44")
    assert refused.status_code == 401
    found: dict[str, list[str]] = {}
    page = browser.new_context().new_page()
    errors = console_errors(page)
    page.goto(live_server.url + "/login/")
    expect(page.get_by_label("Username")).to_be_focused()  # autofocus, before typing
    page.keyboard.type("alice")
    tab_to(page, lambda f: f["tag"] == "INPUT")
    page.keyboard.type("alice-portal-pw")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/keys/")
    expect(page.get_by_text("1 key has suggestions")).to_be_visible()
    check(page, "keys-with-suggestions", found)
    page.goto(f"{live_server.url}/keys/{key.identifier}/")
    check(page, "detail-least-privilege", found)

    tab_to(page, lambda f: f["text"] == "Allow this address")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_text("192.0.2.44 is now allowed.")).to_be_visible()
    tab_to(page, lambda f: f["text"] == "Remove 198.51.100.0/24")  # unused for 90 days
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_text("198.51.100.0/24 is no longer allowed.")).to_be_visible()
    assert sorted(key.allowed_ips.values_list("network", flat=True)) == [
        "127.0.0.1/32",
        "192.0.2.44/32",
    ]

    tab_to(page, lambda f: f["text"] == "Regenerate password")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["tag"] == "BUTTON" and f["text"] == "Regenerate password")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New password")).to_be_visible()
    new_password = page.get_by_label("Password").input_value()
    assert new_password.startswith("ckpw_") and new_password != password
    check(page, "regenerated", found)
    tab_to(page, lambda f: f["text"].startswith("I have stored them"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert new_password not in page.content()  # shown once

    tab_to(page, lambda f: f["text"] == "Renew")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["tag"] == "BUTTON" and f["text"] == "Renew")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="API key renewed")).to_be_visible()
    renewed = page.get_by_label("Identifier").input_value()
    assert renewed != key.identifier and page.get_by_label("Password").input_value()
    check(page, "renewed", found)
    tab_to(page, lambda f: f["text"].startswith("I have stored them"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/keys/{renewed}/")
    expect(page.get_by_text(f"Renews Quarterly report ({key.identifier}).")).to_be_visible()
    check(page, "detail-renewed", found)
    page.context.close()

    assert {state: v for state, v in found.items() if v} == {}
    assert errors == []


def test_a_warning_comes_before_the_idle_log_out_and_staying_signed_in_works(
    browser, live_server, world, settings
):
    settings.SESSION_COOKIE_AGE = 6  # the warning shows 3 s before the end
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    dialog = page.get_by_role("alertdialog")
    dialog.wait_for(state="visible", timeout=8000)
    assert page.evaluate("document.activeElement.id") == "stay-signed-in"
    page.get_by_role("button", name="Stay signed in").click()
    dialog.wait_for(state="hidden")
    page.wait_for_timeout(4000)  # past the first end: the session was renewed
    page.goto(live_server.url + "/keys/")
    assert page.url.endswith("/keys/")
    page.context.close()


def test_every_forms_error_summary_takes_the_focus_and_leads_into_its_field(
    browser, live_server, world
):
    active = world["active"]

    def revoke_without_reason(page):
        page.get_by_role("button", name="Revoke").click()

    def renew_past_a_year(page):
        page.get_by_label("Expiration date of the new key").fill("2999-01-01")
        page.get_by_role("button", name="Renew").click()

    def filter_keys_by_nonsense(page):
        page.get_by_label("Address or network").fill("ten")
        page.get_by_role("button", name="Filter").click()

    def revoke_in_bulk_without_reason(page):
        page.get_by_role("button", name="Revoke 1 key").click()

    def filter_history_by_nobody(page):
        page.get_by_label("User").fill("nobody-at-all")
        page.get_by_role("button", name="Filter").click()

    for person, path, submit, field in [
        ("carol", f"/keys/{active.identifier}/revoke/", revoke_without_reason, "#id_reason"),
        ("alice", f"/keys/{active.identifier}/renew/", renew_past_a_year, "#id_expires_on"),
        ("carol", "/all-keys/", filter_keys_by_nonsense, "#id_ips"),
        ("carol", "/all-keys/revoke/?owner=alice", revoke_in_bulk_without_reason, "#id_reason"),
        ("dave", "/audit/", filter_history_by_nobody, "#id_user"),
    ]:
        page = browser.new_context().new_page()
        errors = console_errors(page)
        log_in(page, live_server.url, person)
        page.goto(live_server.url + path)
        submit(page)
        expect(page).to_have_title(re.compile(r"^Error: "))
        summary = page.locator("[data-error-summary]")
        expect(summary).to_be_focused()
        summary.get_by_role("link").first.click()
        expect(page.locator(field)).to_be_focused()
        assert [e for e in errors if "status of 400" not in e] == [], (path, errors)
        page.context.close()


def test_the_idle_warning_says_when_and_typing_puts_it_off(browser, live_server, world):
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    page.clock.install()
    page.goto(live_server.url + "/keys/add/")
    dialog = page.get_by_role("alertdialog")

    # Typing counts as activity: the session is renewed in the background, the warning put off.
    page.clock.fast_forward("20:00")
    with page.expect_response(lambda response: response.url.endswith("/profile/")):
        page.get_by_label("Name").press_sequentially("Nightly")
    page.clock.fast_forward("20:00")  # 40 minutes after loading, 20 after typing
    expect(dialog).to_be_hidden()

    page.clock.fast_forward("08:01")  # 2 minutes before the end of the default 30
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("You will be signed out in 2 minutes because nothing happened")
    expect(page.get_by_role("button", name="Stay signed in")).to_be_focused()
    page.clock.run_for(61_000)  # the words follow the time left
    expect(dialog).to_contain_text(re.compile(r"You will be signed out in 5\d seconds"))
    page.context.close()


def test_typing_keeps_the_session_and_after_a_time_out_log_in_says_why_and_returns(
    browser, live_server, world, settings
):
    settings.SESSION_COOKIE_AGE = 6
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    page.goto(live_server.url + "/keys/add/")
    for letter in "Still typing":  # 12 s of typing, twice the idle time
        page.get_by_label("Name").press(letter)
        page.wait_for_timeout(1000)
    page.goto(live_server.url + "/keys/?show=live")
    assert page.url.endswith("/keys/?show=live")  # still signed in

    page.wait_for_url(re.compile(r"/login/\?"), timeout=15000)  # nothing happens: signed out
    expect(page.get_by_role("status").filter(has_text="signed out")).to_have_text(
        "You were signed out because nothing happened for 6 seconds. "
        "Log in again to go back to the page you were on."
    )
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-portal-pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/keys/?show=live")
    page.context.close()


# What the page's live region (role=status) holds each time it changes after the page loaded:
# what a screen reader announces.
RECORD_ANNOUNCEMENTS = """
window.announced = [];
document.addEventListener("DOMContentLoaded", () => {
    const region = document.querySelector(".messages[role=status]");
    if (!region) return;
    new MutationObserver(() => {
        const text = region.textContent.trim();
        if (text) window.announced.push(text);
    }).observe(region, { childList: true, subtree: true, characterData: true });
});
"""


def test_a_message_after_a_redirect_is_announced_and_the_heading_takes_the_focus(
    browser, live_server, world
):
    active = world["active"]
    context = browser.new_context()
    context.add_init_script(RECORD_ANNOUNCEMENTS)
    page = context.new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/keys/{active.identifier}/edit/")
    page.get_by_label("Name").fill("Nightly export, renamed")
    with page.expect_navigation():
        page.get_by_role("button", name="Save").first.click()

    assert page.url.endswith(f"/keys/{active.identifier}/")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_be_focused()
    expect(page.get_by_role("status").filter(has_text="The key was saved.")).to_be_visible()
    page.wait_for_function("window.announced.length > 0")
    assert page.evaluate("window.announced") == ["The key was saved."]
    context.close()


# Every control border against what is behind the control: [contrast, what] below 3:1.
THIN_BORDERS = """() => {
    const rgb = (text) => (text.match(/[\\d.]+/g) || []).slice(0, 4).map(Number);
    const lum = ([r, g, b]) => {
        const c = [r, g, b].map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    const behind = (el) => {
        for (let node = el.parentElement; node; node = node.parentElement) {
            const color = rgb(getComputedStyle(node).backgroundColor);
            if (color.length === 3 || color[3] > 0) return color;
        }
        return [255, 255, 255];
    };
    const controls = document.querySelectorAll(
        "input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea, .button"
    );
    const thin = [];
    for (const el of controls) {
        const rect = el.getBoundingClientRect();
        if (rect.width < 4 || rect.height < 4) continue;  // visually hidden
        const style = getComputedStyle(el);
        if (parseFloat(style.borderTopWidth) === 0) continue;
        const [hi, lo] = [lum(rgb(style.borderTopColor)), lum(behind(el))].sort((a, b) => b - a);
        const contrast = (hi + 0.05) / (lo + 0.05);
        if (contrast < 3) thin.push([Math.round(contrast * 100) / 100, el.outerHTML.slice(0, 80)]);
    }
    return thin;
}"""


def test_input_and_button_borders_reach_3_to_1_against_their_background(
    browser, live_server, world
):
    active = world["active"]
    thin = {}
    page = browser.new_context().new_page()
    page.goto(live_server.url + "/login/")
    thin["login"] = page.evaluate(THIN_BORDERS)
    for person, paths in {
        "alice": [
            "/keys/",
            "/keys/add/",
            f"/keys/{active.identifier}/",
            f"/keys/{active.identifier}/regenerate/",
            f"/keys/{active.identifier}/renew/",
        ],
        "carol": [
            "/all-keys/",
            "/all-keys/revoke/?owner=alice",
            f"/keys/{active.identifier}/revoke/",
            "/users/",
        ],
        "dave": ["/audit/"],
    }.items():
        page.context.close()
        page = browser.new_context().new_page()
        log_in(page, live_server.url, person)
        for path in paths:
            page.goto(live_server.url + path)
            thin[path] = page.evaluate(THIN_BORDERS)
    page.context.close()
    assert {path: found for path, found in thin.items() if found} == {}


def test_a_second_factor_is_set_up_and_used_by_keyboard_alone(browser, live_server, world):
    from tests.totp import totp

    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, "alice")
    page.goto(base + "/profile/")
    tab_to(page, lambda f: f["text"] == "Sign-in security")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/accounts/2fa/")
    tab_to(page, lambda f: f["text"] == "Set up an authenticator app")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/accounts/reauthenticate/"))
    tab_to(page, lambda f: f["tag"] == "INPUT")  # Password: confirming it's her
    page.keyboard.type("alice-portal-pw")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/accounts/2fa/totp/activate/")
    tab_to(page, lambda f: f["tag"] == "INPUT")  # the setup key, to copy
    secret = page.evaluate("document.activeElement.value")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    tab_to(page, lambda f: f["tag"] == "INPUT")  # Authenticator code
    page.keyboard.type(totp(secret))
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/accounts/2fa/recovery-codes/")
    code = page.get_by_label("Unused codes").input_value().split()[0]

    tab_to(page, lambda f: f["tag"] == "SUMMARY")  # the user menu, to log out
    page.keyboard.press("Enter")
    tab_to(page, lambda f: f["text"] == "Log out")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/login/"))
    # "You have signed out." took the focus to the heading (static/portal.js): Tab on.
    tab_to(page, lambda f: f["tag"] == "INPUT")
    page.keyboard.type("alice")
    tab_to(page, lambda f: f["tag"] == "INPUT")
    page.keyboard.type("alice-portal-pw")
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/accounts/2fa/authenticate/")
    expect(page.get_by_label("Code")).to_be_focused()  # autofocus
    page.keyboard.type(code)  # a recovery code: the app's code of a moment ago is spent
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/keys/")
    context.close()


def test_the_key_policy_and_a_request_by_keyboard_alone(browser, live_server, world):
    """Carol tightens the policy through its dry run and approves a request, by Tab and Enter."""
    base = live_server.url
    page = browser.new_context().new_page()
    log_in(page, base, "carol")
    tab_to(page, lambda f: f["text"] == "Key policy")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["tag"] == "TEXTAREA")  # Approved networks
    page.keyboard.type("10.0.0.0/8")
    tab_to(page, lambda f: f["text"] == "Save")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Confirm the key policy")).to_be_visible()
    tab_to(page, lambda f: f["text"].startswith("Confirm"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="out of policy")).to_be_visible()
    assert ApiKey.objects.get(name="Nightly export").out_of_policy

    _pending_key()
    page.goto(base + "/keys/")
    tab_to(page, lambda f: f["text"].startswith("Requests"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["tag"] == "TEXTAREA")  # Reason
    page.keyboard.type("Agreed with the partner")
    tab_to(page, lambda f: f["text"] == "Approve")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="was approved")).to_be_visible()
    assert not ApiKey.objects.get(name="Partner feed").awaiting_approval
    page.context.close()
