"""Admins revoke the keys All keys filters in one act for an incident (docs/design.md §12):
the page first shows the active keys the filters match (the dry run), then revokes exactly
those with one reason; one key_revoked event per key and one bulk_revocation event."""

import datetime
import re
from pathlib import Path

import pytest
import time_machine
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys import actions
from keys.actions import bulk_revocation
from keys.models import ApiKey, AuditEvent, AuditHead
from tests.api_calls import basic, call

REVOKE = "/all-keys/revoke/"
Action = AuditEvent.Action
PROXY = "10.0.0.2"


@pytest.fixture
def keys(alice, bob, carol, make_key):
    """Alice's and Bob's keys; Old export created 40 days ago; one key already revoked."""
    with time_machine.travel(timezone.now() - datetime.timedelta(days=40)):
        old = make_key(bob, name="Old export", apis=("risks",), networks=("192.0.2.0/24",))
    made = {
        "pipeline": make_key(alice, name="Pipeline", apis=("risks", "kris")),
        "reports": make_key(bob, name="Reports", apis=("kris",), networks=("10.1.2.0/24",)),
        "old": old,
        "gone": make_key(bob, name="Gone", apis=("kris",)),
    }
    actions.revoke_key(made["gone"][0], actor=carol, reason="Left over")
    return made


def _shown(response) -> list[str]:
    return sorted(key.name for key in response.context["keys"])


def _preview(client, params: dict):
    response = client.get(REVOKE, params)
    assert response.status_code == 200, response.context["filters"].errors
    return response


def _confirm(client, params: dict, reason: str, shown: str | None = None):
    if shown is None:
        shown = _preview(client, params).context["shown"]
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return client.post(f"{REVOKE}?{query}", {"reason": reason, "shown": shown})


def _revoked() -> list[str]:
    return sorted(ApiKey.objects.revoked().exclude(name="Gone").values_list("name", flat=True))


# --- who may -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(REVOKE, {"owner": "bob"})
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("persona", ["alice", "dave"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_staff_and_auditors_may_not_revoke_in_bulk(persona, method, request, login, keys):
    client = login(request.getfixturevalue(persona))
    response = getattr(client, method)(f"{REVOKE}?owner=bob", {"reason": "x", "shown": "y"})
    assert response.status_code == 403
    assert _revoked() == []


def test_only_admins_see_the_revoke_these_keys_button(carol, dave, login, keys):
    assert "Revoke these keys" in login(carol).get("/all-keys/", {"owner": "bob"}).text
    assert "Revoke these keys" not in login(dave).get("/all-keys/", {"owner": "bob"}).text


def test_the_button_needs_a_filter(carol, login, keys):
    assert "Revoke these keys" not in login(carol).get("/all-keys/").text


def test_put_is_not_allowed(carol, login, keys):
    assert login(carol).put(f"{REVOKE}?owner=bob").status_code == 405


# --- without a filter, nothing ------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"status": "active"}, {"ips_match": "outside"}])
def test_without_a_narrowing_filter_nothing_is_shown_or_revoked(carol, login, keys, params):
    client = login(carol)
    page = client.get(REVOKE, params)
    assert page.status_code == 400
    assert "a bulk revocation never takes every key" in page.text
    everything = actions.snapshot(ApiKey.objects.usable())
    response = client.post(REVOKE, {"reason": "All of them", "shown": everything})
    assert response.status_code == 400
    assert _revoked() == []
    assert not AuditEvent.objects.filter(action=Action.BULK_REVOCATION).exists()


def test_a_bad_filter_is_an_error_next_to_its_field(carol, login, keys):
    response = login(carol).get(REVOKE, {"ips": "ten", "created_before": "soon"})
    assert response.status_code == 400
    assert set(response.context["filters"].errors) == {"ips", "created_before"}


# --- each filter selects its keys -------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"owner": "bob"}, ["Old export", "Reports"]),
        ({"api": "kris"}, ["Pipeline", "Reports"]),
        ({"ips": "10.0.0.0/8"}, ["Reports"]),  # the key's range lies inside the network
        ({"ips": "10.1.2.128/25"}, ["Reports"]),  # ... or overlaps it
        ({"ips": "192.0.2.77"}, ["Old export"]),  # ... or holds the address
        ({"ips": "127.0.0.1"}, ["Pipeline"]),
        ({"ips": "172.16.0.0/12"}, []),
        ({"ips": "10.0.0.0/8", "ips_match": "outside"}, ["Old export", "Pipeline"]),
        ({"owner": "bob", "api": "risks"}, ["Old export"]),
        ({"q": "port"}, ["Old export", "Reports"]),
    ],
)
def test_each_filter_selects_the_active_keys_it_names(carol, login, keys, params, names):
    assert _shown(_preview(login(carol), params)) == names


def test_created_before_takes_keys_created_before_that_day(carol, login, keys, today):
    client = login(carol)
    assert _shown(_preview(client, {"created_before": today.isoformat()})) == ["Old export"]
    week_ago = (today - datetime.timedelta(days=7)).isoformat()
    assert _shown(_preview(client, {"created_before": week_ago})) == ["Old export"]
    that_day = (today - datetime.timedelta(days=40)).isoformat()  # created that day: not before
    assert _shown(_preview(client, {"created_before": that_day})) == []
    tomorrow = (today + datetime.timedelta(days=1)).isoformat()
    assert _shown(_preview(client, {"created_before": tomorrow})) == [
        "Old export",
        "Pipeline",
        "Reports",
    ]


def test_the_preview_shows_the_count_and_every_key_it_would_revoke(carol, login, keys):
    response = _preview(login(carol), {"owner": "bob"})
    assert "2 active keys</strong> match these filters" in response.text
    assert "Revoke 2 keys" in response.text
    rows = re.findall(r"<code>(ckid_[^<]+)</code>", response.text)
    assert sorted(rows) == sorted(k.identifier for k in response.context["keys"])
    assert keys["gone"][0].identifier not in response.text  # already revoked: not shown
    assert _revoked() == []  # a dry run


def test_the_preview_warns_of_gateways_that_cache_the_check(carol, login, keys, settings):
    assert "Gateways that cache" not in _preview(login(carol), {"owner": "bob"}).text
    settings.KEYS_GATEWAY_CACHE_SECONDS = 30
    response = _preview(login(carol), {"owner": "bob"})
    assert (
        "Gateways that cache the portal's check let them through for up to 30 seconds more."
        in response.text
    )


def test_a_filter_matching_no_active_key_offers_nothing_to_revoke(carol, login, keys):
    response = _preview(login(carol), {"owner": "carol"})
    assert "there is nothing to revoke" in response.text
    assert 'name="reason"' not in response.text


def test_more_keys_than_one_act_takes_are_not_offered(carol, login, keys, monkeypatch):
    monkeypatch.setattr(bulk_revocation, "MAX_KEYS", 1)
    client = login(carol)
    response = _preview(client, {"owner": "bob"})
    assert "2 active keys</strong> match these filters: one act revokes at most 1." in response.text
    assert 'name="reason"' not in response.text
    everything = actions.snapshot(ApiKey.objects.usable().filter(owner__username="bob"))
    refused = _confirm(client, {"owner": "bob"}, "INC-5", shown=everything)
    assert refused.status_code == 400
    assert "At most 1 keys are revoked in one act." in refused.text
    assert _revoked() == []


# --- the reason ------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   "])
def test_without_a_reason_nothing_is_revoked_and_the_field_says_why(carol, login, keys, reason):
    response = _confirm(login(carol), {"owner": "bob"}, reason)
    assert response.status_code == 400
    assert response.context["form"].errors["reason"] == [
        "Give a reason: it is shown to every key's owner."
    ]
    assert 'aria-invalid="true"' in response.text
    assert _revoked() == []


# --- confirmed --------------------------------------------------------------------------------


def test_confirming_revokes_every_listed_key_each_with_its_event_and_one_bulk_event(
    carol, dave, login, keys
):
    client = login(carol)
    response = _confirm(client, {"owner": "bob"}, "Laptop stolen: INC-42")
    assert response.status_code == 302
    assert response["Location"] == "/all-keys/?owner=bob"
    assert "2 keys revoked." in client.get(response["Location"]).text
    assert _revoked() == ["Old export", "Reports"]
    for name in ("Old export", "Reports"):
        key = ApiKey.objects.get(name=name)
        assert key.revoked_by == carol
        assert key.revoke_reason == "Laptop stolen: INC-42"
        events = AuditEvent.objects.filter(key=key, action=Action.KEY_REVOKED)
        assert [e.details for e in events] == [{"reason": "Laptop stolen: INC-42"}]
    bulk = AuditEvent.objects.get(action=Action.BULK_REVOCATION)
    assert bulk.actor == carol
    assert bulk.owner.username == "bob"
    assert bulk.details == {
        "filters": {"owner": "bob"},
        "keys_revoked": 2,
        "reason": "Laptop stolen: INC-42",
    }
    # After the two key events, in one chain.
    revoked_seqs = AuditEvent.objects.filter(action=Action.KEY_REVOKED).values_list("seq")
    assert bulk.seq > max(seq for (seq,) in revoked_seqs)

    history = login(dave).get("/audit/", {"action": "bulk_revocation"})
    assert "Keys revoked in bulk" in history.text
    assert "“Laptop stolen: INC-42”" in history.text
    assert "keys revoked: 2" in history.text
    assert "filters: owner: bob" in history.text


def test_the_bulk_event_records_every_filter_as_text(carol, login, keys, today):
    client = login(carol)
    params = {"api": "kris", "ips": "10.0.0.0/8", "created_before": "2999-01-01"}
    assert _confirm(client, params, "Network compromised").status_code == 302
    bulk = AuditEvent.objects.get(action=Action.BULK_REVOCATION)
    assert bulk.details["filters"] == {
        "api": "kris",
        "ips": "10.0.0.0/8",
        "ips_match": "in",
        "created_before": "2999-01-01",
    }
    assert _revoked() == ["Reports"]


@pytest.fixture
def _behind_a_proxy(settings):
    settings.KEYS_TRUSTED_PROXIES = [PROXY]
    settings.KEYS_PROXY_HEADER = "HTTP_X_FORWARDED_FOR"


def _gateway(client, key, password):
    return client.get(
        "/gateway/verify",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="127.0.0.1",
        HTTP_X_ORIGINAL_METHOD="GET",
        HTTP_X_ORIGINAL_URI="/api/v1/risks/R-1",
        HTTP_AUTHORIZATION=basic(key.identifier, password),
    )


@pytest.mark.usefixtures("_behind_a_proxy")
def test_a_key_revoked_in_bulk_is_refused_on_its_very_next_call(
    carol, login, alice, make_key, client
):
    feed, password = make_key(alice, name="Feed", apis=("risks",))
    other, _ = make_key(alice, name="Other", apis=("risks",), networks=("10.9.9.9",))
    caller = type(client)()
    # Both doors have verified the password and remember it (the verification cache).
    for _ in range(2):
        assert call(caller, "/api/v1/risks/", feed.identifier, password).status_code == 200
        assert _gateway(caller, feed, password).status_code == 200

    assert _confirm(login(carol), {"ips": "127.0.0.0/8"}, "Incident INC-7").status_code == 302

    assert call(caller, "/api/v1/risks/", feed.identifier, password).status_code == 401
    assert _gateway(caller, feed, password).status_code == 401
    assert ApiKey.objects.get(pk=other.pk).revoked_at is None  # outside the network


def test_a_key_created_after_the_preview_is_not_revoked(carol, bob, login, make_key, keys):
    client = login(carol)
    preview = _preview(client, {"owner": "bob"})
    make_key(bob, name="Created meanwhile")

    response = _confirm(client, {"owner": "bob"}, "INC-9", shown=preview.context["shown"])

    assert response.status_code == 400
    assert "changed since the list was shown: nothing was revoked" in response.text
    assert _revoked() == []
    assert not AuditEvent.objects.filter(action=Action.BULK_REVOCATION).exists()
    # The page shows the new set and its snapshot, the reason kept: confirming again takes it.
    assert _shown(response) == ["Created meanwhile", "Old export", "Reports"]
    assert "INC-9" in response.text
    again = _confirm(client, {"owner": "bob"}, "INC-9", shown=response.context["shown"])
    assert again.status_code == 302
    assert _revoked() == ["Created meanwhile", "Old export", "Reports"]


def test_a_key_revoked_by_someone_else_meanwhile_changes_the_set(carol, login, keys):
    client = login(carol)
    shown = _preview(client, {"owner": "bob"}).context["shown"]
    actions.revoke_key(keys["reports"][0], actor=carol, reason="One at a time")
    response = _confirm(client, {"owner": "bob"}, "INC-9", shown=shown)
    assert response.status_code == 400
    assert _revoked() == ["Reports"]


def _refuse_the_bulk_event() -> None:
    """A real failure: the database refuses the bulk event, after the keys' own events."""
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER bulk_event_fails BEFORE INSERT ON {table} "
                "WHEN NEW.action = 'bulk_revocation' "
                "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION bulk_event_fails() RETURNS trigger AS $$ BEGIN "
                "IF NEW.action = 'bulk_revocation' THEN "
                "RAISE EXCEPTION 'audit store unavailable'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER bulk_event_fails BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION bulk_event_fails()"
            )


def test_when_the_bulk_event_cannot_be_written_no_key_is_revoked(carol, login, keys):
    head = AuditHead.objects.values_list("seq", "hash").get()
    _refuse_the_bulk_event()
    with pytest.raises(DatabaseError):
        actions.revoke_keys(
            ApiKey.objects.usable().filter(owner__username="bob"),
            shown=actions.snapshot(ApiKey.objects.usable().filter(owner__username="bob")),
            actor=carol,
            reason="INC-1",
            filters={"owner": "bob"},
        )
    assert _revoked() == []
    assert AuditHead.objects.values_list("seq", "hash").get() == head


def test_the_page_says_so_when_the_database_refuses_and_nothing_is_revoked(carol, login, keys):
    client = login(carol)
    shown = _preview(client, {"owner": "bob"}).context["shown"]
    _refuse_the_bulk_event()
    response = _confirm(client, {"owner": "bob"}, "INC-1", shown=shown)
    assert response.status_code == 400
    assert "The keys could not be revoked; nothing was changed." in response.text
    assert _revoked() == []


# --- queries --------------------------------------------------------------------------------


def _make_keys(owner, make_key, count: int, prefix: str) -> None:
    for number in range(count):
        make_key(owner, name=f"{prefix} {number}", apis=("risks", "kris"))


def test_the_preview_reads_the_same_few_queries_for_3_or_30_keys(
    carol, bob, login, make_key, django_assert_max_num_queries
):
    client = login(carol)
    _make_keys(bob, make_key, 3, "Few")
    with CaptureQueriesContext(connection) as few:
        assert len(_preview(client, {"owner": "bob"}).context["keys"]) == 3
    _make_keys(bob, make_key, 27, "Many")
    with django_assert_max_num_queries(len(few)):
        assert len(_preview(client, {"owner": "bob"}).context["keys"]) == 30


def test_revoking_in_bulk_costs_per_key_no_more_than_revoking_one_key(
    carol, bob, alice, login, make_key, make_user
):
    one, _ = make_key(alice, name="Alone")
    with CaptureQueriesContext(connection) as single:
        actions.revoke_key(one, actor=carol, reason="Measure")
    _make_keys(bob, make_key, 10, "Ten")
    _make_keys(make_user("erin", "staff"), make_key, 20, "Twenty")
    client = login(carol)
    spent = {}
    for owner in ("bob", "erin"):
        shown = _preview(client, {"owner": owner}).context["shown"]
        with CaptureQueriesContext(connection) as bulk:
            assert _confirm(client, {"owner": owner}, "INC", shown=shown).status_code == 302
        spent[owner] = len(bulk)
    # Ten more keys cost ten revoke_key()s, nothing more: the page, the set's read and
    # lock and the one bulk event are the same few queries however many keys.
    assert spent["erin"] - spent["bob"] <= 10 * len(single)


# --- in Chromium, by keyboard ----------------------------------------------------------------

SHOTS = Path("/tmp/shots-bulk")


def _tab_to(page, text: str, limit: int = 60) -> None:
    """Press Tab until the focused element's text (or value) starts with `text`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(document.activeElement.innerText || document.activeElement.value || '').trim()"
        )
        if focused.startswith(text):
            return
    raise AssertionError(f"never reached {text!r} by Tab")


def _shots(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    for width, height in ((1200, 900), (320, 700)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1200, "height": 900})


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_admin_revokes_a_persons_keys_by_keyboard_and_their_calls_are_refused(
    browser, live_server, world
):
    from django.test import Client
    from playwright.sync_api import expect

    from keys.models import Api, latest_expiry_for, local_date
    from tests.browser import check, console_errors, log_in

    alice, bob = world["people"]["alice"], world["people"]["bob"]
    feed, password = actions.create_key(
        owner=alice, name="Risk feed", expires_on=latest_expiry_for(local_date()),
        networks=["127.0.0.1"], apis=list(Api.objects.filter(slug="risks")),
    )  # fmt: skip
    bobs, bobs_password = actions.create_key(
        owner=bob, name="Bob's feed", expires_on=latest_expiry_for(local_date()),
        networks=["127.0.0.1"], apis=list(Api.objects.filter(slug="risks")),
    )  # fmt: skip
    for key, secret in ((feed, password), (bobs, bobs_password)):
        assert call(Client(), "/api/v1/risks/", key.identifier, secret).status_code == 200

    page = browser.new_context().new_page()
    errors = console_errors(page)
    log_in(page, live_server.url, "carol")
    page.goto(live_server.url + "/all-keys/")
    page.get_by_label("Owner").focus()
    page.keyboard.type("alice")
    page.keyboard.press("Enter")  # Enter filters
    page.wait_for_url("**/all-keys/?*owner=alice*")
    _shots(page, "1-all-keys-by-owner")
    _tab_to(page, "Revoke these keys")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Revoke these keys")).to_be_visible()
    expect(page.get_by_text("2 active keys match these filters.")).to_be_visible()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(3)  # the header and the two keys
    expect(page.get_by_role("table")).to_contain_text(feed.identifier)
    expect(page.get_by_role("table")).to_contain_text(world["active"].identifier)
    _shots(page, "2-preview")

    _tab_to(page, "Revoke 2 keys")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # no reason
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Reason: Give a reason: it is shown to every key's owner.")
    _shots(page, "3-without-reason")
    found: dict[str, list[str]] = {}
    check(page, "bulk-revoke-without-reason", found)
    assert ApiKey.objects.revoked().filter(owner=alice).count() == 1  # only the old one

    _tab_to(page, "Reason:")  # the summary's link leads into the field
    page.keyboard.press("Enter")
    expect(page.get_by_label("Reason")).to_be_focused()
    page.keyboard.type("Laptop stolen: INC-42")
    _tab_to(page, "Revoke 2 keys")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    expect(page.get_by_role("status").filter(has_text="2 keys revoked.")).to_be_visible()
    _shots(page, "4-revoked")
    page.context.close()

    assert call(Client(), "/api/v1/risks/", feed.identifier, password).status_code == 401
    assert call(Client(), "/api/v1/risks/", bobs.identifier, bobs_password).status_code == 200
    assert AuditEvent.objects.filter(action=Action.BULK_REVOCATION).count() == 1
    assert found == {"bulk-revoke-without-reason": []}
    assert [e for e in errors if "status of 400" not in e] == []
