"""Admins deactivate a user on the Users page: their keys are revoked and their sessions end."""

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from keys.models import AuditEvent

USERS = "/users/"


def _deactivate_url(username: str) -> str:
    return f"/users/{username}/deactivate/"


@pytest.fixture
def bob_keys(bob, make_key):
    return [make_key(bob, name="Reports")[0], make_key(bob, name="Exports")[0]]


def test_admin_lists_users_with_their_live_keys(carol, login, bob, bob_keys, alice):
    response = login(carol).get(USERS)
    assert response.status_code == 200
    rows = {person.username: person for person in response.context["page"].object_list}
    assert rows["bob"].live_keys == 2 and rows["alice"].live_keys == 0
    assert f'href="{_deactivate_url("bob")}"' in response.text
    assert f'href="{_deactivate_url("carol")}"' not in response.text  # not yourself


def test_admin_searches_users(carol, login, bob, alice):
    response = login(carol).get(USERS, {"q": "BO"})
    assert [p.username for p in response.context["page"].object_list] == ["bob"]


def test_deactivating_an_unknown_user_is_404(carol, login):
    assert login(carol).get(_deactivate_url("nobody")).status_code == 404


def test_admin_deactivates_a_user_revoking_keys_and_ending_sessions(carol, bob, bob_keys, login):
    bob_browser = Client()
    bob_browser.force_login(bob)
    assert bob_browser.get("/keys/").status_code == 200

    client = login(carol)
    page = client.get(_deactivate_url("bob"))
    assert "their 2 keys are revoked" in page.text
    response = client.post(_deactivate_url("bob"), {"reason": "Left the company"})
    assert response.status_code == 302

    bob.refresh_from_db()
    assert not bob.is_active
    for key in bob_keys:
        key.refresh_from_db()
        assert key.is_revoked and key.revoked_by == carol
        assert key.revoke_reason == "Left the company"
    events = AuditEvent.objects.filter(owner=bob, action="owner_deactivated")
    assert events.count() == 3  # one per key, one for the user
    assert bob_browser.get("/keys/").status_code == 302  # logged out
    assert not any(
        str(s.get_decoded().get("_auth_user_id")) == str(bob.pk) for s in Session.objects.all()
    )


def test_the_owner_can_see_why_after_reactivation(carol, bob, bob_keys, login):
    login(carol).post(_deactivate_url("bob"), {"reason": ""})
    bob.is_active = True
    bob.save()
    page = login(bob).get(f"/keys/{bob_keys[0].identifier}/")
    assert "by carol" in page.text and "Owner bob was deactivated." in page.text


def test_admin_cannot_deactivate_themselves(carol, login):
    response = login(carol).post(_deactivate_url("carol"), {"reason": "oops"})
    assert response.status_code == 200
    assert "You cannot deactivate yourself." in response.text
    carol.refresh_from_db()
    assert carol.is_active


def test_deactivating_an_inactive_user_changes_nothing(carol, bob, login):
    bob.is_active = False
    bob.save()  # itself on the record: user_changed
    before = AuditEvent.objects.count()
    response = login(carol).post(_deactivate_url("bob"))
    assert response.status_code == 302
    assert AuditEvent.objects.count() == before


def test_admin_cannot_deactivate_a_superuser(carol, login, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="root-portal-pw")
    response = login(carol).post("/users/root/deactivate/", {"reason": "tidy up"})
    assert b"Only a superuser can deactivate a superuser." in response.content
    root.refresh_from_db()
    assert root.is_active
