"""SIEMs poll the audit history: GET /api/v1/audit/events with a key granted Audit history.

Only administrators may grant that API, and only read only: the rule lives on the key model,
so the key form, the actions (the shell) and the Django admin all meet it.
"""

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from keys import actions
from keys.audit import chain
from keys.models import Api, AuditEvent, AuditHead, KeyGrant, latest_expiry_for, local_date
from tests.api_calls import call

EVENTS = "/api/v1/audit/events"
Action = AuditEvent.Action


@pytest.fixture
def audit_api(db) -> Api:
    return Api.objects.get(slug="audit")


@pytest.fixture
def siem_key(client, carol, make_key):
    """Carol (admin) grants her key "SIEM" the Audit history API, read only (event 1), and
    pulls once: its first use from this address is event 2."""
    key = make_key(carol, name="SIEM", apis=("audit",), read_only=("audit",))
    assert pull(client, key).status_code == 200
    assert AuditEvent.objects.get(seq=2).action == Action.KEY_USED
    return key


def pull(client, key_and_password, query: str = "", **extra):
    key, password = key_and_password
    return call(client, f"{EVENTS}{query}", key.identifier, password, **extra)


def append(count: int) -> None:
    """`count` more events in the history (catalogue changes), appended in batches."""
    for start in range(0, count, 500):
        chain.record_many(
            [
                {"action": Action.CATALOGUE_CHANGED, "details": {"n": n}}
                for n in range(start, min(count, start + 500))
            ]
        )


def key_form(api: Api, access: str = "read") -> dict:
    return {
        "name": "SIEM",
        "expires_on": latest_expiry_for(local_date()).isoformat(),
        "allowed_ips": ["127.0.0.1"],
        "apis": [str(api.pk)],
        f"access-{api.slug}": access,
    }


# --- the grant -----------------------------------------------------------------------------


def test_the_audit_history_api_is_seeded_admins_only_read_only_with_its_route(audit_api):
    assert (audit_api.name, audit_api.admins_only, audit_api.read_only) == (
        "Audit history",
        True,
        True,
    )
    assert list(audit_api.routes.values_list("host", "path_prefix")) == [("", "/api/v1/audit/")]


def test_staff_are_not_offered_the_audit_history_api_on_the_key_form(alice, login, audit_api):
    page = login(alice).get("/keys/add/")
    assert page.status_code == 200
    assert b"Audit history" not in page.content
    assert b"Risks" in page.content


def test_an_admin_is_offered_it_read_only_and_nothing_else(carol, login, audit_api):
    page = login(carol).get("/keys/add/").content.decode()
    assert "Audit history" in page
    select = page.split(f'name="access-{audit_api.slug}"')[1].split("</select>")[0]
    assert "Read only" in select
    assert "Read and write" not in select


def test_staff_posting_the_audit_history_api_get_the_error_next_to_apis(alice, login, audit_api):
    response = login(alice).post("/keys/add/", key_form(audit_api))
    assert response.status_code == 200
    assert response.context["form"].errors["apis"] == [
        "Only administrators may grant the Audit history API."
    ]
    assert not alice.api_keys.exists()


def test_an_admin_posting_it_read_and_write_gets_the_error_next_to_apis(carol, login, audit_api):
    response = login(carol).post("/keys/add/", key_form(audit_api, access="write"))
    assert response.status_code == 200
    assert response.context["form"].errors["apis"] == [
        "The Audit history API can only be granted read only."
    ]


def test_an_admin_grants_it_read_only_through_the_form(carol, login, audit_api):
    response = login(carol).post("/keys/add/", key_form(audit_api))
    assert response.status_code == 200
    key = carol.api_keys.get()
    assert key.read_only_slugs() == ["audit"]


def test_the_model_refuses_the_grant_to_staff_from_the_shell_too(alice, bob, audit_api, make_key):
    with pytest.raises(ValidationError) as refused:
        make_key(alice, apis=("audit",), read_only=("audit",))
    assert refused.value.message_dict == {
        "apis": ["Only administrators may grant the Audit history API."]
    }
    key, _ = make_key(bob)
    with pytest.raises(ValidationError, match="Only administrators may grant"):
        actions.edit_key(
            key,
            actor=bob,
            name=key.name,
            expires_on=key.expires_on,
            networks=["127.0.0.1"],
            apis=[audit_api],
            read_only=["audit"],
        )
    assert list(key.apis.values_list("slug", flat=True)) == ["risks"]


def test_the_model_refuses_a_write_grant_even_to_an_admin(carol, make_key):
    with pytest.raises(ValidationError, match="can only be granted read only"):
        make_key(carol, apis=("audit",))


def test_the_django_admin_keeps_the_api_flags_and_its_path_segment_fixed(carol, login, audit_api):
    carol.is_staff = True  # the Django admin's door (adduser --role admin sets it)
    carol.save()
    admin = login(carol)
    url = f"/admin/keys/api/{audit_api.pk}/change/"
    page = admin.get(url)
    assert page.status_code == 200
    assert b"Only administrators may grant it" in page.content  # shown, read only
    response = admin.post(
        url,
        {
            "slug": "history",
            "name": "Audit history",
            "description": "",
            "position": "100",
            "is_active": "on",
            "admins_only": "",
            "read_only": "",
            "routes-TOTAL_FORMS": "0",
            "routes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"] == [
        "The portal serves this API itself: its path segment is fixed."
    ]
    audit_api.refresh_from_db()
    assert (audit_api.slug, audit_api.admins_only, audit_api.read_only) == ("audit", True, True)


# --- the pull ------------------------------------------------------------------------------


def test_a_key_granted_it_pulls_pages_up_to_the_head(client, siem_key):
    append(3)  # events 3-5
    first = pull(client, siem_key, "?limit=2")
    assert first.status_code == 200
    assert first["Content-Type"] == "application/json"
    assert first["Cache-Control"] == "no-store"
    body = first.json()
    assert [event["seq"] for event in body["events"]] == [1, 2]
    assert (body["next_after"], body["head_seq"]) == (2, 5)
    assert body["events"][0]["hashed"]["action"] == Action.KEY_CREATED
    assert set(body["events"][0]) == {"seq", "hashed", "owner", "prev_hash", "hash", "signature"}

    rest = pull(client, siem_key, "?after=2").json()
    assert [event["seq"] for event in rest["events"]] == [3, 4, 5]
    assert (rest["next_after"], rest["head_seq"]) == (5, 5)
    end = pull(client, siem_key, "?after=5").json()
    assert end == {"events": [], "next_after": 5, "head_seq": 5}


def test_events_appended_later_come_on_the_next_poll(client, siem_key):
    assert pull(client, siem_key).json()["next_after"] == 2
    append(2)
    later = pull(client, siem_key, "?after=2").json()
    assert [event["seq"] for event in later["events"]] == [3, 4]


def test_an_event_past_the_head_is_not_served(client, siem_key):
    """A row the head does not count yet is not in the chain (AuditEventQuerySet.in_chain)."""
    append(1)
    AuditHead.objects.filter(pk=1).update(seq=2)
    body = pull(client, siem_key).json()
    assert [event["seq"] for event in body["events"]] == [1, 2]
    assert body["head_seq"] == 2


def test_json_lines_on_request(client, siem_key):
    append(2)
    response = pull(client, siem_key, "?after=2", HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert (response["Audit-Next-After"], response["Audit-Head-Seq"]) == ("4", "4")
    lines = response.content.decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 4]


def test_paging_through_2500_events_gives_each_once_in_order(client, siem_key):
    append(2498)
    seen: list[int] = []
    after = 0
    while True:
        body = pull(client, siem_key, f"?after={after}&limit=1000").json()
        seen.extend(event["seq"] for event in body["events"])
        if body["next_after"] == body["head_seq"]:
            break
        after = body["next_after"]
    assert seen == list(range(1, 2501))


def test_a_page_costs_the_same_queries_whatever_its_size(client, siem_key, settings):
    append(300)
    settings.KEYS_USAGE_FLUSH_SECONDS = 3600  # the use is stored later, by the flusher

    def queries(limit: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert pull(client, siem_key, f"?limit={limit}").status_code == 200
        return len(captured)

    # the key (1), whether its owner is still an administrator (3), the head and the page (2)
    assert queries(1) == queries(300) <= 6


@pytest.mark.parametrize(
    "query",
    [
        "?after=-1",
        "?after=x",
        "?after=",
        "?after=1.5",
        "?after=1&after=2",
        "?after=9999999999999999999",
        "?limit=0",
        "?limit=1001",
        "?limit=abc",
        "?from=1",
    ],
)
def test_bad_parameters_are_a_400_problem(client, siem_key, query):
    response = pull(client, siem_key, query)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400


def test_the_largest_limit_is_accepted(client, siem_key):
    assert pull(client, siem_key, "?limit=1000").status_code == 200


def test_a_key_without_the_grant_gets_a_403_problem(client, carol, make_key, audit_api):
    key = make_key(carol, name="Risks only")
    response = pull(client, key)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "This key is not granted the API it called."


def test_no_credentials_get_the_401(client, db):
    response = client.get(EVENTS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_write_methods_are_refused(client, siem_key, method):
    response = pull(client, siem_key, method=method)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    # nothing written but the refusal's record
    assert AuditEvent.objects.exclude(action=Action.USE_DENIED).count() == 2


def test_head_is_served(client, siem_key):
    assert pull(client, siem_key, method="head").status_code == 200


def test_a_file_written_from_the_pull_passes_the_offline_check(client, siem_key, tmp_path):
    append(249)
    lines = []
    after = 0
    while True:
        response = pull(
            client, siem_key, f"?after={after}&limit=100", HTTP_ACCEPT="application/x-ndjson"
        )
        lines.extend(response.content.decode().splitlines(keepends=True))
        after = int(response["Audit-Next-After"])
        if after == int(response["Audit-Head-Seq"]):
            break
    path = tmp_path / "siem.jsonl"
    path.write_text("".join(lines))
    public_key = tmp_path / "audit.pem"
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    public_key.write_text(out.getvalue())
    out = io.StringIO()
    call_command("verify_audit", jsonl=str(path), public_key=[str(public_key)], stdout=out)
    head = AuditHead.objects.get()
    assert f"OK: 251 events, seq 1 to 251, head {head.hash}" in out.getvalue()


def test_a_demoted_admins_key_can_no_longer_pull(client, carol, siem_key):
    from django.contrib.auth.models import Group

    carol.groups.set([Group.objects.get(name="staff")])
    response = pull(client, siem_key)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "Only an administrator's key may read the audit history."
    assert b'"events"' not in response.content


def test_the_grant_rules_hold_for_grants_written_directly_from_a_shell(
    alice, carol, make_key, audit_api
):
    read = {"access": KeyGrant.Access.READ}
    staff_key, _ = make_key(alice)
    admin_key, _ = make_key(carol)
    refused = [
        (lambda: staff_key.apis.add(audit_api, through_defaults=read), "Only administrators"),
        (lambda: KeyGrant.objects.create(apikey=staff_key, api=audit_api, **read), "Only admin"),
        (lambda: admin_key.apis.add(audit_api), "can only be granted read only"),  # default
    ]
    for attempt, message in refused:
        # a savepoint each, as a shell's autocommit would give
        with pytest.raises(ValidationError, match=message), transaction.atomic():
            attempt()
    admin_key.apis.add(audit_api, through_defaults=read)
    with pytest.raises(ValidationError, match="cannot be read and write"), transaction.atomic():
        KeyGrant.objects.filter(apikey=admin_key).update(access=KeyGrant.Access.WRITE)
    assert admin_key.read_only_slugs() == ["audit"]
    assert list(staff_key.apis.values_list("slug", flat=True)) == ["risks"]


def test_an_audit_entry_an_admin_made_before_becomes_admins_only_read_only(audit_api):
    from django.apps import apps

    from keys.seed import seed_audit_api

    Api.objects.filter(pk=audit_api.pk).update(admins_only=False, read_only=False)
    seed_audit_api(apps)  # as migration 0024 and every migrate do
    audit_api.refresh_from_db()
    assert (audit_api.admins_only, audit_api.read_only) == (True, True)


def test_an_admins_own_api_named_audit_history_keeps_its_name(audit_api):
    from django.apps import apps

    from keys.seed import seed_audit_api

    KeyGrant.objects.filter(api=audit_api).delete()
    Api.objects.filter(pk=audit_api.pk).delete()
    Api.objects.create(slug="siem-reports", name="Audit history")
    seed_audit_api(apps)
    assert Api.objects.get(slug="audit").name == "Audit history (portal)"
    assert Api.objects.get(slug="siem-reports").name == "Audit history"
