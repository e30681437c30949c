"""Every privileged act on people is on the record (docs/design.md §5, issue 9): who acted, from
where, on whom (by stable id and the name at the time), in the same hash chain as keys."""

import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from keys.audit import chain as audit
from keys.models import AuditEvent
from tests.admin_forms import user_change_form


@pytest.fixture
def carol(carol):
    carol.is_staff = True
    carol.save()
    return carol


def events(action: str, **about) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **about).order_by("seq"))


def test_an_admin_resetting_a_password_and_signing_in_as_them_is_on_the_record(
    carol, alice, login, client
):
    admin = login(carol)
    response = admin.post(
        f"/admin/portal/user/{alice.pk}/password/",
        {"password1": "Taken-Over-Pass-9", "password2": "Taken-Over-Pass-9"},
        REMOTE_ADDR="198.51.100.7",
    )
    assert response.status_code == 302
    client.logout()
    signed_in = client.post("/login/", {"username": "alice", "password": "Taken-Over-Pass-9"})
    assert signed_in.status_code == 302
    client.post("/keys/add/", {})  # whatever she does next is hers, after this record

    (reset,) = events("password_set", owner=alice)
    assert reset.actor == carol and reset.actor_label == "carol"
    assert reset.actor_ip == "198.51.100.7"
    assert reset.details == {"user": "alice", "by": "someone else"}
    (logged_in,) = events("login_succeeded", owner=alice)
    assert logged_in.seq > reset.seq and logged_in.actor == alice
    assert list(audit.verify_chain()) == []


def test_failed_log_ins_are_recorded_once_a_window_and_when_a_network_locks(alice, client):
    for _ in range(7):
        client.post("/login/", {"username": "alice", "password": "wrong-guess-123"})
    (failed,) = events("login_failed", owner=alice)
    assert failed.details["failures_in_window"] == 1
    (locked,) = events("login_locked", owner=alice)
    assert locked.details == {"user": "alice", "locked": "network", "failures_in_window": 5}
    assert all(event.actor is None and event.actor_ip == "127.0.0.1" for event in (failed, locked))


def test_an_account_passing_its_budget_across_networks_is_recorded_once(settings, alice, client):
    settings.LOGIN_THROTTLE_ACCOUNT_BUDGET = 6
    for n in range(12):  # from twelve networks, one guess each
        client.post(
            "/login/",
            {"username": "alice", "password": "wrong-guess-123"},
            REMOTE_ADDR=f"203.0.113.{n + 1}",
        )
    (locked,) = events("login_locked", owner=alice)
    assert locked.details["locked"] == "account budget"
    assert locked.details["failures_in_window"] == 6
    assert locked.actor_ip == "203.0.113.6"


def test_a_network_guessing_many_names_is_recorded_as_locked_with_no_name(settings, client, db):
    settings.LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK = 10
    for n in range(12):
        client.post("/login/", {"username": f"guess{n}", "password": "x"})
    (locked,) = events("login_locked")
    assert locked.owner is None
    assert locked.details == {
        "user": None,
        "locked": "network, every user name",
        "failures_in_window": 10,
    }


def test_a_failed_log_in_as_nobody_never_records_what_was_typed(client, db):
    client.post("/login/", {"username": "Secret-Typed-Here", "password": "x"})
    (failed,) = events("login_failed")
    assert failed.owner is None and failed.details["user"] is None
    assert "Secret-Typed-Here" not in str(failed.details)


def test_a_user_changing_their_own_password_is_recorded_as_by_themselves(carol, login):
    response = login(carol).post(
        "/admin/password_change/",
        {
            "old_password": "carol-portal-pw",
            "new_password1": "Carols-New-Pass-9",
            "new_password2": "Carols-New-Pass-9",
        },
    )
    assert response.status_code == 302
    (changed,) = events("password_set", owner=carol)
    assert changed.actor == carol and changed.details["by"] == "self"


def test_creating_renaming_and_flagging_a_user_in_the_django_admin_is_recorded(
    carol, login, django_user_model
):
    admin = login(carol)
    admin.post(
        "/admin/portal/user/add/",
        {"username": "erin", "password1": "Erin-Pass-1234", "password2": "Erin-Pass-1234",
         "usable_password": "true"},
    )  # fmt: skip
    erin = django_user_model.objects.get(username="erin")
    (created,) = events("user_created", owner=erin)
    assert created.actor == carol and created.details["username"] == "erin"

    staff = Group.objects.get(name="staff")
    admin.post(
        f"/admin/portal/user/{erin.pk}/change/",
        user_change_form(erin, username="erin.b", is_staff="on", groups=[str(staff.pk)]),
    )
    (changed,) = events("user_changed", owner=erin)
    assert changed.actor == carol
    assert changed.details["username"] == {"before": "erin", "after": "erin.b"}
    assert changed.details["is_staff"] == {"before": False, "after": True}
    (roles,) = events("roles_changed", owner=erin)
    assert roles.details == {"user": "erin.b", "added": ["staff"], "removed": []}


def test_adduser_is_recorded_as_the_system(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Correct-Horse-Battery-9\n"))
    call_command("adduser", "frank", "--role", "auditor", "--password-stdin", stdout=io.StringIO())
    (created,) = events("user_created")
    assert created.actor is None and created.actor_label == "system"
    assert events("roles_changed")[0].details["added"] == ["auditor"]


def test_the_user_filter_finds_a_user_by_a_former_name(carol, alice, dave, login, make_key):
    make_key(alice, name="Before the rename")
    alice.username = "alice.smith"
    alice.save()
    page = login(dave).get("/audit/", {"user": "alice"})
    assert page.status_code == 200  # not "No user with this name."
    found = {(event.action, event.owner_id) for event in page.context["page"].events}
    assert ("key_created", alice.pk) in found and ("user_changed", alice.pk) in found


def test_a_user_with_history_cannot_be_deleted_only_deactivated(carol, alice, login, make_key):
    make_key(alice)
    page = login(carol).get(f"/admin/portal/user/{alice.pk}/delete/")
    assert page.status_code == 403
    alice.refresh_from_db()
