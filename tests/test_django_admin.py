"""The Django admin: keys read-only (never the hash) with revoke through the action, audit
events read-only, catalogue and user changes through the audited actions."""

import pytest
from django.contrib.auth.models import Group

from keys.models import Api, AuditEvent
from tests.admin_forms import user_change_form
from tests.api_calls import call

ACTION_CHECKBOX = "_selected_action"


@pytest.fixture
def carol(carol):
    """The admin, with access to the Django admin (adduser --role admin sets is_staff)."""
    carol.is_staff = True
    carol.save()
    return carol


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "root-pw-123")


@pytest.fixture
def key(alice, make_key):
    return make_key(alice, name="Pipeline")[0]


# --- keys ------------------------------------------------------------------------------------


def test_auditors_and_staff_have_no_django_admin(alice, dave, login, key):
    for person in (alice, dave):
        response = login(person).get("/admin/keys/apikey/")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_admin_sees_keys_in_the_django_admin_but_never_the_hash(carol, login, key):
    client = login(carol)
    listing = client.get("/admin/keys/apikey/")
    assert listing.status_code == 200 and key.identifier in listing.text
    assert 'value="revoke_selected"' in listing.text
    page = client.get(f"/admin/keys/apikey/{key.pk}/change/")
    assert page.status_code == 200
    assert key.identifier in page.text
    assert "$argon2" not in page.text and "password_hash" not in page.text.lower()
    assert 'name="_save"' not in page.text


@pytest.mark.parametrize("status", ["x", "ACTIVE", "%00"])
def test_an_unknown_status_in_the_key_list_shows_every_key(carol, login, make_key, alice, status):
    active = make_key(alice, name="Active")[0]
    revoked = make_key(alice, name="Revoked")[0]
    login(carol).post(f"/keys/{revoked.identifier}/revoke/", {"reason": "done"})

    listing = login(carol).get(f"/admin/keys/apikey/?status={status}")

    assert listing.status_code == 200
    assert active.identifier in listing.text and revoked.identifier in listing.text


def test_a_known_status_still_filters_the_key_list(carol, login, make_key, alice):
    active = make_key(alice, name="Active")[0]
    revoked = make_key(alice, name="Revoked")[0]
    login(carol).post(f"/keys/{revoked.identifier}/revoke/", {"reason": "done"})
    listing = login(carol).get("/admin/keys/apikey/?status=revoked")
    assert revoked.identifier in listing.text and active.identifier not in listing.text


def test_keys_cannot_be_added_changed_or_deleted_in_the_django_admin(carol, root, client, key):
    for person in (carol, root):
        client.force_login(person)
        assert client.get("/admin/keys/apikey/add/").status_code == 403
        response = client.post(f"/admin/keys/apikey/{key.pk}/change/", {"name": "Hacked"})
        assert response.status_code == 403
        assert client.post(f"/admin/keys/apikey/{key.pk}/delete/").status_code == 403
    key.refresh_from_db()
    assert key.name == "Pipeline"


def test_revoking_in_the_django_admin_asks_for_a_reason(carol, login, key):
    data = {"action": "revoke_selected", ACTION_CHECKBOX: [key.pk], "index": 0}
    response = login(carol).post("/admin/keys/apikey/", data)
    assert response.status_code == 200
    assert "Revoke these keys?" in response.text and 'name="reason"' in response.text
    key.refresh_from_db()
    assert not key.is_revoked


def test_revoking_in_the_django_admin_refuses_an_empty_reason(carol, login, key):
    data = {"action": "revoke_selected", ACTION_CHECKBOX: [key.pk], "confirm": "yes"}
    response = login(carol).post("/admin/keys/apikey/", {**data, "reason": " "})
    assert response.status_code == 200
    assert "This field is required." in response.text
    key.refresh_from_db()
    assert not key.is_revoked


def test_revoking_in_the_django_admin_goes_through_the_revoke_action(carol, login, key):
    data = {"action": "revoke_selected", ACTION_CHECKBOX: [key.pk], "confirm": "yes"}
    response = login(carol).post("/admin/keys/apikey/", {**data, "reason": "Leaked"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.is_revoked and key.revoked_by == carol and key.revoke_reason == "Leaked"
    event = AuditEvent.objects.get(action="key_revoked")
    assert event.key == key and event.actor == carol and event.details == {"reason": "Leaked"}


def test_the_revoke_action_needs_the_revoke_any_key_permission(carol, login, key):
    Group.objects.get(name="admin").permissions.remove(
        *Group.objects.get(name="admin").permissions.filter(codename="revoke_any_key")
    )
    response = login(carol).get("/admin/keys/apikey/")
    assert "revoke_selected" not in response.text


# --- audit events ----------------------------------------------------------------------------


def test_audit_events_are_read_only_in_the_django_admin(carol, root, client, key):
    event = AuditEvent.objects.get(action="key_created")
    for person in (carol, root):
        client.force_login(person)
        assert client.get("/admin/keys/auditevent/").status_code == 200
        page = client.get(f"/admin/keys/auditevent/{event.pk}/change/")
        assert page.status_code == 200 and 'name="_save"' not in page.text
        assert client.get("/admin/keys/auditevent/add/").status_code == 403
        response = client.post(f"/admin/keys/auditevent/{event.pk}/change/", {"seq": 9})
        assert response.status_code == 403
        assert client.post(f"/admin/keys/auditevent/{event.pk}/delete/").status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).seq == event.seq


# --- the API catalogue -----------------------------------------------------------------------


def _api_form(api: Api, **changes) -> dict:
    data = {
        "slug": api.slug,
        "name": api.name,
        "description": api.description,
        "position": api.position,
        "is_active": "on" if api.is_active else "",
        # the routes inline: no route form sent, existing routes left as they are
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
    }
    return {**data, **changes}


def test_changing_the_catalogue_in_the_django_admin_is_audited(carol, login):
    api = Api.objects.get(slug="kris")
    response = login(carol).post(
        f"/admin/keys/api/{api.pk}/change/", _api_form(api, name="KRIs", is_active="")
    )
    assert response.status_code == 302
    api.refresh_from_db()
    assert api.name == "KRIs" and not api.is_active
    event = AuditEvent.objects.get(action="catalogue_changed")
    assert event.actor == carol
    assert event.details == {
        "api": "kris",
        "change": "changed",
        "changes": {
            "name": {"before": "Key risk indicators", "after": "KRIs"},
            "is_active": {"before": True, "after": False},
        },
    }


def test_adding_to_the_catalogue_in_the_django_admin_is_audited(carol, login):
    data = {"slug": "assets", "name": "Assets", "description": "", "position": 9}
    data.update({"routes-TOTAL_FORMS": "0", "routes-INITIAL_FORMS": "0"})
    response = login(carol).post("/admin/keys/api/add/", {**data, "is_active": "on"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="catalogue_changed")
    assert event.details["change"] == "added" and event.details["api"] == "assets"


def test_an_api_that_keys_hold_keeps_its_slug(carol, login, key):
    api = Api.objects.get(slug="risks")
    response = login(carol).post(f"/admin/keys/api/{api.pk}/change/", _api_form(api, slug="r"))
    assert response.status_code == 200
    assert "Keys hold this API: its path segment cannot change." in response.text
    assert Api.objects.filter(slug="risks").exists()


def test_an_api_that_keys_hold_cannot_be_deleted(root, client, key):
    api = Api.objects.get(slug="risks")
    client.force_login(root)
    assert client.post(f"/admin/keys/api/{api.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Api.objects.filter(slug="risks").exists()


def test_deleting_an_unused_api_is_audited(root, client):
    api = Api.objects.get(slug="mois")
    client.force_login(root)
    response = client.post(f"/admin/keys/api/{api.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Api.objects.filter(slug="mois").exists()
    event = AuditEvent.objects.get(action="catalogue_changed")
    assert event.details["change"] == "deleted" and event.actor == root


# --- users -----------------------------------------------------------------------------------


def test_deactivating_a_user_in_the_django_admin_revokes_their_keys(carol, alice, login, key):
    form = user_change_form(alice)
    del form["is_active"]
    response = login(carol).post(f"/admin/portal/user/{alice.pk}/change/", form)
    assert response.status_code == 302
    alice.refresh_from_db()
    key.refresh_from_db()
    assert not alice.is_active
    assert key.is_revoked and key.revoked_by == carol
    assert AuditEvent.objects.filter(owner=alice, action="owner_deactivated").count() == 2


def test_the_deactivate_action_in_the_django_admin_revokes_keys(carol, alice, login, key):
    data = {"action": "deactivate_selected", ACTION_CHECKBOX: [alice.pk, carol.pk], "index": 0}
    response = login(carol).post("/admin/portal/user/", data)
    assert response.status_code == 302
    alice.refresh_from_db()
    carol.refresh_from_db()
    key.refresh_from_db()
    assert not alice.is_active and key.is_revoked
    assert carol.is_active  # never yourself


def test_an_admin_cannot_make_anyone_a_superuser(carol, alice, login):
    response = login(carol).post(
        f"/admin/portal/user/{alice.pk}/change/", user_change_form(alice, is_superuser="on")
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert not alice.is_superuser


def test_an_admin_cannot_change_a_superusers_password(carol, root, login):
    client = login(carol)
    url = f"/admin/portal/user/{root.pk}/password/"
    assert client.get(url).status_code == 403
    data = {"password1": "Taken-0ver-pw!", "password2": "Taken-0ver-pw!"}
    assert client.post(url, {**data, "usable_password": "true"}).status_code == 403
    root.refresh_from_db()
    assert root.check_password("root-pw-123")


def test_an_admin_cannot_change_or_deactivate_a_superuser(carol, root, login):
    client = login(carol)
    form = user_change_form(root, email="carol@example.com")
    assert client.post(f"/admin/portal/user/{root.pk}/change/", form).status_code == 403
    data = {"action": "deactivate_selected", ACTION_CHECKBOX: [root.pk], "index": 0}
    client.post("/admin/portal/user/", data)
    root.refresh_from_db()
    assert root.email == "root@example.com" and root.is_active


def test_a_superuser_can_change_another_superusers_password(root, django_user_model, client):
    other = django_user_model.objects.create_superuser("root2", "root2@example.com", "pw-456")
    client.force_login(root)
    data = {"password1": "N3w-root2-pw!", "password2": "N3w-root2-pw!", "usable_password": "true"}
    response = client.post(f"/admin/portal/user/{other.pk}/password/", data)
    assert response.status_code == 302
    other.refresh_from_db()
    assert other.check_password("N3w-root2-pw!")


def test_deactivating_an_api_withdraws_it_from_keys_that_hold_it(carol, login, alice, make_key):
    from django.test import Client

    key, password = make_key(alice, name="Both", apis=("risks", "controls"))
    caller = Client()
    assert call(caller, "/api/v1/risks/", key.identifier, password).status_code == 200
    api = Api.objects.get(slug="risks")
    response = login(carol).post(f"/admin/keys/api/{api.pk}/change/", _api_form(api, is_active=""))
    assert response.status_code == 302

    assert call(caller, "/api/v1/risks/", key.identifier, password).status_code == 403
    assert call(caller, "/api/v1/controls/", key.identifier, password).status_code == 200
    withdrawn = AuditEvent.objects.get(key=key, action="key_edited")
    assert withdrawn.actor == carol
    assert withdrawn.details["apis"] == {"before": ["controls", "risks"], "after": ["controls"]}
    denied = AuditEvent.objects.get(key=key, action="use_denied")
    assert denied.details["reason"] == "api_not_granted"


def test_a_route_added_in_the_django_admin_is_audited_and_used(carol, login):
    api = Api.objects.get(slug="kris")
    data = _api_form(api, **{"routes-TOTAL_FORMS": "1", "routes-0-host": "API.example.org"})
    data["routes-0-path_prefix"] = "/kris/"
    response = login(carol).post(f"/admin/keys/api/{api.pk}/change/", data)
    assert response.status_code == 302
    assert api.routes.filter(host="api.example.org", path_prefix="/kris/").exists()
    event = AuditEvent.objects.filter(action=AuditEvent.Action.CATALOGUE_CHANGED).last()
    assert event.details["changes"]["routes"] == {
        "before": ["/api/v1/kris/"],
        "after": ["/api/v1/kris/", "api.example.org/kris/"],
    }


def test_a_route_another_api_claims_is_refused_in_the_django_admin(carol, login):
    api = Api.objects.get(slug="kris")
    data = _api_form(api, **{"routes-TOTAL_FORMS": "1", "routes-0-path_prefix": "/api/v1/risks/"})
    response = login(carol).post(f"/admin/keys/api/{api.pk}/change/", data)
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert not api.routes.filter(path_prefix="/api/v1/risks/").exists()
