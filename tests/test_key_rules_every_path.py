"""Each key rule has one home, and every path that can change a key meets the same refusal:
the Add/Edit form, keys.actions, the Django admin, Model.save(), QuerySet.update() and, where
the database guards the rule itself, raw SQL."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from keys import actions
from keys.models import AllowedIp, Api, ApiKey, latest_expiry_for, local_date
from keys.validators import MAX_ALLOWED_IPS

ACTION_CHECKBOX = "_selected_action"


@pytest.fixture
def carol(carol):
    """Admin, with the Django admin (adduser gives admins is_staff)."""
    carol.is_staff = True
    carol.save()
    return carol


@pytest.fixture
def key(alice, make_key):
    return make_key(alice, name="Pipeline")[0]


def add_form(client, **changes):
    data = {
        "name": "Pipeline",
        "expires_on": latest_expiry_for(local_date()).isoformat(),
        "allowed_ips": ["127.0.0.1"],
        "apis": [Api.objects.get(slug="risks").pk],
        **changes,
    }
    return client.post("/keys/add/", data)


def edit_form(client, key, **changes):
    data = {
        "name": key.name,
        "expires_on": key.expires_on.isoformat(),
        "allowed_ips": ["127.0.0.1"],
        "apis": [Api.objects.get(slug="risks").pk],
        **changes,
    }
    return client.post(f"/keys/{key.identifier}/edit/", data)


def form_errors(response, field) -> str:
    assert response.status_code == 200, response.status_code
    return " ".join(response.context["form"].errors.get(field, []))


def raw_sql(statement: str, *params):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


# --- what never changes on a key -------------------------------------------------------------


@pytest.mark.parametrize("field", ApiKey.NEVER_CHANGES)
def test_what_never_changes_is_refused_by_save_update_and_the_database(
    alice, bob, make_key, key, field
):
    stored = ApiKey.objects.filter(pk=key.pk).values(ApiKey._meta.get_field(field).attname)
    before = stored.get()
    other = {
        "identifier": "ckid_" + "A" * 26,
        "owner": bob,
        "created_at": key.created_at - datetime.timedelta(days=30),
        "created_on": key.created_on - datetime.timedelta(days=30),
        "latest_expires_on": key.latest_expires_on + datetime.timedelta(days=30),
        "replaces": make_key(bob, name="Older")[0] if field == "replaces" else None,
    }[field]

    setattr(key, field, other)
    with pytest.raises(ValueError, match="never changes"):
        key.save()
    with pytest.raises(ValueError, match=r"only through keys\.actions"):
        ApiKey.objects.filter(pk=key.pk).update(**{field: other})
    column = ApiKey._meta.get_field(field).column
    value = other.pk if field in {"owner", "replaces"} else other
    with pytest.raises(DatabaseError, match="never change"):
        raw_sql(f"UPDATE keys_apikey SET {column} = %s WHERE id = %s", value, key.pk)  # noqa: S608
    assert stored.get() == before


def test_a_key_cannot_change_owner_in_the_django_admin(carol, bob, login, key):
    response = login(carol).post(f"/admin/keys/apikey/{key.pk}/change/", {"owner": bob.pk})
    assert response.status_code == 403
    key.refresh_from_db()
    assert key.owner.username == "alice"


def test_revocation_is_final_through_save_update_the_edit_form_and_the_database(alice, login, key):
    actions.revoke_key(key, actor=alice, reason="done")
    key.refresh_from_db()

    key.revoked_at = None
    with pytest.raises(ValueError, match="revoked key cannot be changed"):
        key.save()
    with pytest.raises(ValueError, match=r"only through keys\.actions"):
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=None)
    response = edit_form(login(alice), key, name="Back from the dead")
    assert response.status_code == 302  # back to the key page, which says why
    with pytest.raises(ValidationError, match="revoked key cannot be changed"):
        actions.edit_key(key, actor=alice, name="x", expires_on=key.expires_on,
                         networks=["127.0.0.1"], apis=Api.objects.all()[:1])  # fmt: skip
    for statement in (
        "UPDATE keys_apikey SET revoked_at = NULL WHERE id = %s",
        "UPDATE keys_apikey SET name = 'Back from the dead' WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="revocation is final"):
            raw_sql(statement, key.pk)
    key.refresh_from_db()
    assert key.is_revoked and key.name == "Pipeline" and key.revoke_reason == "done"


# --- the expiration date -----------------------------------------------------------------


def test_expiry_past_the_one_year_limit_is_refused_on_every_path(alice, login, today):
    too_late = latest_expiry_for(today) + datetime.timedelta(days=1)
    response = add_form(login(alice), expires_on=too_late.isoformat())
    assert "at most one year" in form_errors(response, "expires_on")
    with pytest.raises(ValidationError, match="at most one year"):
        actions.create_key(owner=alice, name="x", expires_on=too_late,
                           networks=["127.0.0.1"], apis=Api.objects.all()[:1])  # fmt: skip
    assert not ApiKey.objects.exists()


def test_the_key_policy_is_one_more_rule_on_every_path(alice, carol, login, key):
    """Lifetime, APIs per role and approved networks: the form, create, edit and renew alike."""
    actions.change_policy(
        actor=carol, approved_networks=["127.0.0.0/8"], max_lifetime_days=30,
        api_roles={"kris": ["admin"]},
    )  # fmt: skip
    late = local_date() + datetime.timedelta(days=31)
    response = add_form(login(alice), expires_on=late.isoformat())
    assert "at most 30 days" in form_errors(response, "expires_on")
    kris = list(Api.objects.filter(slug="kris"))
    fields = dict(owner=alice, name="x", expires_on=late, networks=["127.0.0.1"], apis=kris)
    with pytest.raises(ValidationError) as refused:
        actions.create_key(**fields)
    assert set(refused.value.message_dict) == {"expires_on", "apis"}
    with pytest.raises(ValidationError, match="outside the approved networks"):
        actions.create_key(**fields | {"networks": ["192.0.2.1"], "expires_on": local_date()})
    with pytest.raises(ValidationError, match="at most 30 days"):
        actions.edit_key(key, actor=alice, name=key.name, expires_on=key.expires_on,
                         networks=["127.0.0.1"], apis=list(key.apis.all()))  # fmt: skip
    with pytest.raises(ValidationError, match="at most 30 days"):
        actions.renew_key(key, actor=alice, expires_on=late, overlap=datetime.timedelta(0))
    assert ApiKey.objects.count() == 1


def test_expiry_only_ever_moves_earlier_on_every_path(alice, login, key):
    later = key.expires_on
    actions.edit_key(key, actor=alice, name=key.name, expires_on=later - datetime.timedelta(days=9),
                     networks=["127.0.0.1"], apis=key.apis.all())  # fmt: skip
    key.refresh_from_db()
    shortened = key.expires_on

    response = edit_form(login(alice), key, expires_on=later.isoformat())
    assert "can only be shortened" in form_errors(response, "expires_on")
    with pytest.raises(ValidationError, match="can only be shortened"):
        actions.edit_key(key, actor=alice, name=key.name, expires_on=later,
                         networks=["127.0.0.1"], apis=key.apis.all())  # fmt: skip
    key.expires_on = later
    with pytest.raises(ValidationError, match="can only be shortened"):
        key.save()
    with pytest.raises(DatabaseError, match="only moves earlier"), transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(expires_on=later)
    with pytest.raises(DatabaseError, match="only moves earlier"):
        raw_sql("UPDATE keys_apikey SET expires_on = %s WHERE id = %s", later, key.pk)
    key.refresh_from_db()
    assert key.expires_on == shortened


# --- allowed IPs ---------------------------------------------------------------------------


def test_more_than_fifty_allowed_ips_are_refused_on_every_path(alice, login, key):
    sixty = [f"192.0.2.{n}" for n in range(1, 61)]
    response = add_form(login(alice), name="Wide", allowed_ips=sixty)
    assert f"at most {MAX_ALLOWED_IPS}" in form_errors(response, "allowed_ips")
    with pytest.raises(ValidationError, match=f"at most {MAX_ALLOWED_IPS}"):
        actions.create_key(owner=alice, name="Wide", expires_on=key.expires_on,
                           networks=sixty, apis=Api.objects.all()[:1])  # fmt: skip
    assert ApiKey.objects.count() == 1

    AllowedIp.objects.bulk_create(AllowedIp(key=key, network=n) for n in sixty[1:MAX_ALLOWED_IPS])
    assert key.allowed_ips.count() == MAX_ALLOWED_IPS
    with pytest.raises(ValidationError, match=f"at most {MAX_ALLOWED_IPS}"):
        AllowedIp.objects.create(key=key, network="198.51.100.1")
    with pytest.raises(DatabaseError, match=f"at most {MAX_ALLOWED_IPS}"):
        raw_sql("INSERT INTO keys_allowedip (key_id, network) VALUES (%s, %s)", key.pk, "x")
    assert key.allowed_ips.count() == MAX_ALLOWED_IPS


@pytest.mark.parametrize(
    "entry",
    [
        "0.0.0.0/0",
        "::/0",
        "::ffff:0.0.0.0/96",
        "0.0.0.0/1",
        "128.0.0.0/1",
        "10.0.0.0/8",
        "2001::/16",
    ],
)
def test_catch_all_and_near_catch_all_ranges_are_refused_on_every_path(alice, login, key, entry):
    response = add_form(login(alice), name="Open", allowed_ips=[entry])
    assert "too wide" in form_errors(response, "allowed_ips")
    with pytest.raises(ValidationError, match="too wide"):
        actions.create_key(owner=alice, name="Open", expires_on=key.expires_on,
                           networks=[entry], apis=Api.objects.all()[:1])  # fmt: skip
    with pytest.raises(ValidationError, match="too wide"):
        AllowedIp.objects.create(key=key, network=entry)
    assert list(key.allowed_ips.values_list("network", flat=True)) == ["127.0.0.1/32"]


@pytest.mark.parametrize("entry", ["10.1.0.0/16", "2001:db8:1::/48", "::ffff:10.1.0.0/112"])
def test_ranges_at_the_configured_width_are_accepted(alice, make_key, entry):
    key, _ = make_key(alice, networks=[entry])
    assert key.allowed_ips.count() == 1


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Line\nbreak", "tab\there", "bell\x07", "rtl\u202eexe.txt"])
def test_names_with_control_characters_are_refused_on_every_path(alice, login, key, name):
    response = add_form(login(alice), name=name)
    assert "control" in form_errors(response, "name")
    with pytest.raises(ValidationError, match="control"):
        actions.create_key(owner=alice, name=name, expires_on=key.expires_on,
                           networks=["127.0.0.1"], apis=Api.objects.all()[:1])  # fmt: skip
    key.name = name
    with pytest.raises(ValidationError, match="control"):
        key.save()
    assert ApiKey.objects.get().name == "Pipeline"


def test_a_taken_name_is_refused_by_the_form_and_the_action(alice, login, key):
    response = add_form(login(alice), name="Pipeline")
    assert "already have a key with this name" in form_errors(response, "name")
    with pytest.raises(ValidationError, match="already have a key with this name"):
        actions.create_key(owner=alice, name=" Pipeline ", expires_on=key.expires_on,
                           networks=["127.0.0.1"], apis=Api.objects.all()[:1])  # fmt: skip
    assert ApiKey.objects.count() == 1


# --- who may revoke, and when a reason is needed ----------------------------------------------


def test_revoking_someone_elses_key_needs_a_reason_on_every_path(carol, login, key):
    client = login(carol)
    response = client.post(f"/keys/{key.identifier}/revoke/", {"reason": "  "})
    assert "required" in form_errors(response, "reason")
    data = {"action": "revoke_selected", ACTION_CHECKBOX: [key.pk], "confirm": "yes"}
    response = client.post("/admin/keys/apikey/", {**data, "reason": " "})
    assert "This field is required." in response.text
    with pytest.raises(ValidationError, match="reason"):
        actions.revoke_key(key, actor=carol, reason=" ")
    key.refresh_from_db()
    assert not key.is_revoked


def test_the_owner_revokes_without_a_reason(alice, login, key):
    response = login(alice).post(f"/keys/{key.identifier}/revoke/", {"reason": ""})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.is_revoked


@pytest.mark.parametrize(
    ("person", "status"), [("bob", 404), ("dave", 403)], ids=["other staff", "auditor"]
)
def test_only_the_owner_and_admins_may_revoke(request, login, key, person, status):
    client = login(request.getfixturevalue(person))
    assert client.post(f"/keys/{key.identifier}/revoke/", {"reason": "mine now"}).status_code == (
        status
    )
    key.refresh_from_db()
    assert not key.is_revoked


# --- one status filter ---------------------------------------------------------------------


def test_all_keys_the_admin_and_the_api_agree_on_which_keys_are_expired(
    alice, carol, login, make_key, time_machine
):
    soon, _ = make_key(alice, name="Soon", expires_on=local_date())
    later, _ = make_key(alice, name="Later")
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(days=2))
    client = login(carol)
    all_keys = client.get("/all-keys/", {"status": "expired"}).text
    admin = client.get("/admin/keys/apikey/", {"status": "expired"}).text
    assert soon.identifier in all_keys and later.identifier not in all_keys
    assert soon.identifier in admin and later.identifier not in admin
    assert list(ApiKey.objects.with_status(ApiKey.Status.EXPIRED)) == [soon]
    assert soon.status() == ApiKey.Status.EXPIRED and later.status() == ApiKey.Status.ACTIVE
