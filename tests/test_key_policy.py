"""The administrator's key policy (docs/design.md §12) over HTTP: the pages, the requests, the
dry run, and what the API and the gateway check answer for pending and out-of-policy keys."""

import csv
import datetime
import io

import pytest
from django.core import mail

from keys import actions
from keys.api import usage
from keys.models import ApiKey, AuditEvent, KeyPolicy, KeyRequest, local_date
from tests.api_calls import assert_the_401, basic, call

Action = AuditEvent.Action
WHOAMI = "/api/v1/whoami"


def reasons(key: ApiKey) -> list[str]:
    usage.flush()
    events = AuditEvent.objects.filter(key=key, action=Action.USE_DENIED).order_by("seq")
    return [event.details["reason"] for event in events]


def set_policy(carol, **values):
    values = {"approved_networks": [], "max_lifetime_days": 365, "api_roles": {}} | values
    return actions.change_policy(actor=carol, **values)


def every_role() -> dict:
    """The policy form's APIs per role as it comes: every API granted by staff and admins."""
    from keys.models import Api

    return {f"roles-{api.slug}": ["staff", "admin"] for api in Api.objects.active()}


def add_form(name="Partner feed", ips=("203.0.113.5",), **extra) -> dict:
    return {
        "name": name,
        "expires_on": (local_date() + datetime.timedelta(days=30)).isoformat(),
        "allowed_ips": list(ips),
        "apis": [str(pk) for pk in extra.pop("api_pks", [])],
        **extra,
    }


@pytest.fixture
def risks(db):
    from keys.models import Api

    return Api.objects.get(slug="risks")


@pytest.fixture
def approved(carol):
    """Carol approved 127.0.0.0/8 and 10.0.0.0/8 only."""
    set_policy(carol, approved_networks=["127.0.0.0/8", "10.0.0.0/8"])


# --- who may see the pages ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/policy/", "/requests/"])
def test_only_admins_reach_the_policy_pages(client, login, alice, dave, carol, path):
    assert client.get(path).status_code == 302  # anonymous: to the log-in page
    for persona in (alice, dave):
        login(persona)
        assert client.get(path).status_code == 403
    login(carol)
    response = client.get(path)
    assert response.status_code == 200
    assert b'href="/policy/">Key policy</a>' in response.content


def test_staff_see_no_key_policy_link(client, login, alice):
    login(alice)
    assert b"Key policy" not in client.get("/keys/").content


def test_policy_apply_and_decisions_refuse_get(client, login, carol):
    login(carol)
    assert client.get("/policy/apply/").status_code == 405
    assert client.get("/requests/ckid_x/approve/").status_code == 405  # before any lookup


# --- the policy page ---------------------------------------------------------------------------


def test_the_policy_offers_no_role_choice_for_an_api_only_admins_may_grant(client, login, carol):
    login(carol)
    page = client.get("/policy/")
    offered = {field.label for field in page.context["form"].role_fields()}
    assert "Risks" in offered
    assert "Audit history" not in offered  # staff may never grant it, whatever is ticked
    assert 'name="roles-audit"' not in page.text


def test_admin_saves_approved_networks_and_it_is_audited_with_before_and_after(
    client, login, carol, risks
):
    login(carol)
    response = client.post(
        "/policy/",
        {
            "approved_networks": "10.0.0.0/8\n192.0.2.7",
            "max_lifetime_days": "90",
            "roles-risks": ["admin"],
        },
    )
    assert response.status_code == 302
    policy = KeyPolicy.current()
    assert policy.approved_networks == ["10.0.0.0/8", "192.0.2.7/32"]
    assert policy.max_lifetime_days == 90
    assert policy.roles_granting("risks") == ["admin"]
    event = AuditEvent.objects.get(action=Action.POLICY_CHANGED)
    assert event.details["changes"]["approved_networks"] == {
        "before": [],
        "after": ["10.0.0.0/8", "192.0.2.7"],
    }
    assert event.details["changes"]["max_lifetime_days"] == {"before": 365, "after": 90}
    page = client.get("/policy/").content.decode()
    assert "10.0.0.0/8\n192.0.2.7" in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("approved_networks", "10.0.0.1/8", "has host bits set"),
        ("approved_networks", "not-a-network", "is not an IPv4 or IPv6 address"),
        ("approved_networks", "10.0.0.0/8\n10.0.0.0/8", "only once"),
        ("max_lifetime_days", "366", "less than or equal to 365"),
        ("max_lifetime_days", "0", "greater than or equal to 1"),
    ],
)
def test_a_bad_policy_value_is_an_error_next_to_its_field(
    client, login, carol, field, value, message
):
    login(carol)
    data = {"approved_networks": "", "max_lifetime_days": "365"} | {field: value}
    response = client.post("/policy/", data)
    assert response.status_code == 200
    assert message in str(response.context["form"].errors[field])
    assert not AuditEvent.objects.filter(action=Action.POLICY_CHANGED).exists()


def test_the_policy_refuses_a_lifetime_beyond_a_year_from_any_path(carol):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        set_policy(carol, max_lifetime_days=400)


# --- requests ----------------------------------------------------------------------------------


def test_an_allowed_ip_outside_asks_for_a_justification(client, login, alice, approved, risks):
    login(alice)
    response = client.post("/keys/add/", add_form(api_pks=[risks.pk]))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "203.0.113.5 lies outside the approved networks" in errors["justification"][0]
    assert 'name="justification"' in response.content.decode()
    assert not ApiKey.objects.exists()


def test_a_key_inside_the_approved_networks_needs_no_justification(
    client, login, alice, approved, risks
):
    login(alice)
    response = client.post("/keys/add/", add_form(ips=["10.1.2.3"], api_pks=[risks.pk]))
    assert response.status_code == 200 and "password" in response.context
    key = ApiKey.objects.get()
    assert not key.awaiting_approval and not KeyRequest.objects.exists()


def test_with_a_justification_the_key_is_created_pending_and_refused(
    client, login, alice, carol, approved, risks
):
    login(alice)
    response = client.post(
        "/keys/add/",
        add_form(ips=["127.0.0.1", "203.0.113.5"], api_pks=[risks.pk], justification="Partner"),
    )
    password = response.context["password"]  # shown once, as always
    assert b"Pending approval" in response.content
    key = ApiKey.objects.get()
    assert key.awaiting_approval
    request = KeyRequest.objects.get()
    assert (request.kind, request.outside) == ("new", ["203.0.113.5/32"])
    assert AuditEvent.objects.filter(action=Action.APPROVAL_REQUESTED, key=key).exists()
    [sent] = mail.outbox
    assert sent.to == ["carol@example.com"] and "Partner" in sent.body
    assert password not in sent.body

    assert_the_401(call(client, WHOAMI, key.identifier, password))
    assert reasons(key) == ["pending_approval"]
    assert "Pending approval" in client.get(f"/keys/{key.identifier}/").content.decode()

    login(carol)
    assert "Requests (1)" in client.get("/requests/").content.decode()
    response = client.post(f"/requests/{key.identifier}/approve/", {})
    assert response.status_code == 302
    assert call(client, WHOAMI, key.identifier, password).status_code == 200
    assert "Requests (1)" not in client.get("/requests/").content.decode()
    assert mail.outbox[-1].to == ["alice@example.com"]
    assert "approved" in mail.outbox[-1].subject.lower()
    assert AuditEvent.objects.filter(action=Action.REQUEST_APPROVED, key=key).exists()


def test_deny_needs_a_reason_and_revokes_the_new_key(
    client, login, alice, carol, approved, make_key
):
    key, password = make_key(alice, networks=["203.0.113.5"], justification="Partner")
    login(carol)
    response = client.post(f"/requests/{key.identifier}/deny/", {})
    assert response.status_code == 400
    assert "Give a reason" in response.content.decode()
    assert KeyRequest.objects.open().count() == 1

    prefix = f"r-{key.identifier}"
    response = client.post(f"/requests/{key.identifier}/deny/", {f"{prefix}-reason": "Unknown"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.is_revoked and "Unknown" in key.revoke_reason
    assert mail.outbox[-1].to == ["alice@example.com"] and "Unknown" in mail.outbox[-1].body
    assert AuditEvent.objects.filter(action=Action.REQUEST_DENIED, key=key).exists()
    assert_the_401(call(client, WHOAMI, key.identifier, password))
    assert reasons(key) == ["revoked"]


def test_an_edit_waiting_for_approval_keeps_the_old_allowlist_working(
    client, login, alice, carol, approved, make_key, risks
):
    key, password = make_key(alice, networks=["127.0.0.1"])
    login(alice)
    data = add_form(name=key.name, ips=["192.0.2.9"], api_pks=[risks.pk])
    data["expires_on"] = key.expires_on.isoformat()
    response = client.post(f"/keys/{key.identifier}/edit/", data)
    assert "justification" in response.context["form"].errors
    response = client.post(f"/keys/{key.identifier}/edit/", data | {"justification": "Move"})
    assert response.status_code == 302
    page = client.get(f"/keys/{key.identifier}/").content.decode()
    assert "A change of allowed IPs is pending approval" in page and "192.0.2.9" in page
    assert [str(e) for e in key.allowed_ips.all()] == ["127.0.0.1"]
    assert call(client, WHOAMI, key.identifier, password).status_code == 200

    login(carol)
    client.post(f"/requests/{key.identifier}/approve/", {})
    assert [str(e) for e in key.allowed_ips.all()] == ["192.0.2.9"]
    assert_the_401(call(client, WHOAMI, key.identifier, password))  # 127.0.0.1 no more
    assert reasons(key) == ["ip_not_allowed"]
    assert (
        call(client, WHOAMI, key.identifier, password, REMOTE_ADDR="192.0.2.9").status_code == 200
    )


# --- policy changes: dry run, out of policy, back in ----------------------------------------------


def test_a_stricter_policy_is_shown_first_then_applied(client, login, alice, bob, carol, make_key):
    wide, wide_password = make_key(alice, name="Wide", networks=["203.0.113.5"])
    _inside, _inside_password = make_key(bob, name="Inside", networks=["10.0.0.7"])
    login(carol)
    data = {"approved_networks": "10.0.0.0/8", "max_lifetime_days": "365"} | every_role()
    response = client.post("/policy/", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "would leave 1 key out of policy" in page, page[page.find("<main") :]
    assert "Wide" in page and "alice" in page and "Inside" not in page
    assert KeyPolicy.current().approved_networks == []  # not yet

    response = client.post("/policy/apply/", data)
    assert response.status_code == 302
    wide.refresh_from_db()
    assert wide.out_of_policy and not wide.is_revoked
    assert_the_401(call(client, WHOAMI, wide.identifier, wide_password, REMOTE_ADDR="203.0.113.5"))
    assert reasons(wide) == ["out_of_policy"]
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    assert "Out of policy" in client.get(f"/keys/{wide.identifier}/").content.decode()
    assert "Out of policy" in client.get("/all-keys/").content.decode()
    rows = list(
        csv.DictReader(io.StringIO(client.get("/all-keys/inventory.csv").getvalue().decode()))
    )
    assert {row["name"]: row["state"] for row in rows} == {"Wide": "out_of_policy", "Inside": ""}
    event = AuditEvent.objects.filter(action=Action.POLICY_CHANGED).last()
    assert event.details["keys_out_of_policy"] == [wide.identifier]

    looser = {"approved_networks": "", "max_lifetime_days": "365"} | every_role()
    response = client.post("/policy/", looser)
    assert response.status_code == 302, response.context["form"].errors
    wide.refresh_from_db()
    assert not wide.out_of_policy
    ok = call(client, WHOAMI, wide.identifier, wide_password, REMOTE_ADDR="203.0.113.5")
    assert ok.status_code == 200


def test_an_edit_brings_a_key_back_into_policy(client, login, alice, carol, make_key, risks):
    key, password = make_key(alice, networks=["127.0.0.1"])
    set_policy(carol, max_lifetime_days=30)
    key.refresh_from_db()
    assert key.out_of_policy
    assert_the_401(call(client, WHOAMI, key.identifier, password))
    login(alice)
    data = add_form(name=key.name, ips=["127.0.0.1"], api_pks=[risks.pk])
    data["expires_on"] = (local_date() + datetime.timedelta(days=31)).isoformat()
    response = client.post(f"/keys/{key.identifier}/edit/", data)
    assert "at most 30 days" in str(response.context["form"].errors["expires_on"])
    data["expires_on"] = (local_date() + datetime.timedelta(days=30)).isoformat()
    assert client.post(f"/keys/{key.identifier}/edit/", data).status_code == 302
    assert call(client, WHOAMI, key.identifier, password).status_code == 200


def test_an_api_a_role_may_no_longer_grant_leaves_the_key_out(
    client, login, alice, carol, make_key, risks
):
    key, password = make_key(alice)
    _, newly, _ = set_policy(carol, api_roles={"risks": ["admin"]})
    assert newly == [key]
    assert_the_401(call(client, WHOAMI, key.identifier, password))
    login(alice)
    response = client.post("/keys/add/", add_form(ips=["127.0.0.1"], api_pks=[risks.pk]))
    assert "does not let your role grant Risks" in str(response.context["form"].errors["apis"])
    carols, _ = make_key(carol, name="Carol's")  # an admin may
    assert not carols.out_of_policy


def test_the_gateway_check_refuses_pending_and_out_of_policy_keys(
    client, settings, alice, carol, make_key
):
    settings.KEYS_TRUSTED_PROXIES = ["10.0.0.2"]
    settings.KEYS_PROXY_HEADER = "HTTP_X_FORWARDED_FOR"

    def verify(key, password):
        return client.get(
            "/gateway/verify",
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="203.0.113.5",
            HTTP_X_ORIGINAL_METHOD="GET",
            HTTP_X_ORIGINAL_URI="/api/v1/risks/",
            HTTP_AUTHORIZATION=basic(key.identifier, password),
        )

    old, old_password = make_key(alice, name="Old", networks=["203.0.113.5"])
    assert verify(old, old_password).status_code == 200
    set_policy(carol, approved_networks=["10.0.0.0/8"])
    pending, pending_password = make_key(
        alice, name="New", networks=["203.0.113.5"], justification="Partner"
    )
    assert verify(old, old_password).status_code == 401
    assert verify(pending, pending_password).status_code == 401
    assert reasons(old) == ["out_of_policy"]
    assert reasons(pending) == ["pending_approval"]


def test_a_user_without_a_role_is_staff_to_the_policy_too(client, carol, make_user, make_key):
    """The portal's backends make every active user without a role staff (portal/roles.py)."""
    erin = make_user("erin")
    key, password = make_key(erin, networks=["127.0.0.1"])
    _, newly, _ = set_policy(carol, approved_networks=["127.0.0.0/8"])
    assert newly == []
    assert call(client, WHOAMI, key.identifier, password).status_code == 200


def test_a_deactivated_api_that_left_a_key_out_lets_it_back_in(client, alice, carol, make_key):
    from keys.models import Api

    key, password = make_key(alice, apis=("risks", "kris"))
    set_policy(carol, api_roles={"kris": ["admin"]})
    assert_the_401(call(client, WHOAMI, key.identifier, password))
    kris = Api.objects.get(slug="kris")
    kris.is_active = False
    actions.save_api(kris, actor=carol)
    assert call(client, WHOAMI, key.identifier, password).status_code == 200


def test_the_check_reads_pending_and_out_of_policy_in_its_one_query(
    client, alice, carol, approved, make_key, django_assert_num_queries
):
    pending, pending_password = make_key(alice, networks=["192.0.2.1"], justification="x")
    out, out_password = make_key(alice, name="Later out", networks=["10.0.0.1"])
    working, working_password = make_key(alice, name="Working", networks=["127.0.0.1"])
    set_policy(carol, approved_networks=["127.0.0.0/8"])
    assert call(client, WHOAMI, working.identifier, working_password).status_code == 200
    # The first refusal of each reason reaches the history at once (keys.api.usage); repeats
    # within the minute are counted in memory, so what remains is the check's own reading.
    assert_the_401(call(client, WHOAMI, pending.identifier, pending_password))
    assert_the_401(call(client, WHOAMI, out.identifier, out_password))
    with django_assert_num_queries(1):  # the key read; the policy is never read by a call
        assert_the_401(call(client, WHOAMI, pending.identifier, pending_password))
    with django_assert_num_queries(1):
        assert_the_401(call(client, WHOAMI, out.identifier, out_password))


def test_editing_something_else_leaves_a_waiting_change_alone(
    client, login, alice, approved, make_key, risks
):
    key, _ = make_key(alice, networks=["127.0.0.1"])
    actions.edit_key(
        key, actor=alice, name=key.name, expires_on=key.expires_on, networks=["192.0.2.9"],
        apis=[risks], justification="Move",
    )  # fmt: skip
    login(alice)
    data = add_form(name="Renamed", ips=["127.0.0.1"], api_pks=[risks.pk])
    data["expires_on"] = key.expires_on.isoformat()
    assert client.post(f"/keys/{key.identifier}/edit/", data).status_code == 302
    assert KeyRequest.objects.open().get().networks == ["192.0.2.9/32"]
    data["allowed_ips"] = ["127.0.0.2"]  # another allowlist, inside: the waiting one goes
    assert client.post(f"/keys/{key.identifier}/edit/", data).status_code == 302
    assert not KeyRequest.objects.open().exists()
    assert KeyRequest.objects.get().decision == KeyRequest.Decision.WITHDRAWN


def test_revoking_a_key_withdraws_its_waiting_request(
    client, login, alice, carol, approved, make_key
):
    key, _ = make_key(alice, networks=["192.0.2.1"], justification="Partner")
    actions.revoke_key(key, actor=alice)
    login(carol)
    page = client.get("/requests/").content.decode()
    assert "No request waits for a decision." in page and "Requests (" not in page
    assert KeyRequest.objects.get().decision == KeyRequest.Decision.WITHDRAWN


def test_an_owner_losing_the_role_that_granted_an_api_leaves_the_key_out(client, carol, make_key):
    from django.contrib.auth.models import Group

    key, password = make_key(carol, apis=("kris",))
    set_policy(carol, api_roles={"kris": ["admin"]})
    assert call(client, WHOAMI, key.identifier, password).status_code == 200
    carol.groups.remove(Group.objects.get(name="admin"))  # staff now, as every active user
    assert_the_401(call(client, WHOAMI, key.identifier, password))
    assert reasons(key) == ["out_of_policy"]
    carol.groups.add(Group.objects.get(name="admin"))
    assert call(client, WHOAMI, key.identifier, password).status_code == 200


def test_an_api_the_policy_does_not_restrict_is_anyones(dave, make_key):
    """An auditor holds no granting role; a key made for one in code still gets an API the
    policy never restricted (the portal's pages do not let an auditor make keys at all)."""
    key, _ = make_key(dave)
    assert not key.out_of_policy
