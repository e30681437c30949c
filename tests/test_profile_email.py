"""People set their own e-mail address on the profile page: expiry reminders go there."""

import datetime
import io

import pytest
from django.core import mail
from django.core.management import call_command

from keys.models import AuditEvent


def save_email(client, email):
    return client.post("/profile/email/", {"email": email}, REMOTE_ADDR="198.51.100.7")


def test_the_profile_offers_the_address_in_a_labelled_field(alice, login):
    page = login(alice).get("/profile/").content.decode()
    assert '<label for="id_email">E-mail address</label>' in page
    assert 'value="alice@example.com"' in page
    assert 'action="/profile/email/"' in page


def test_a_person_sets_their_own_address_and_sees_it_said(alice, login):
    client = login(alice)
    response = save_email(client, "alice@new.example")
    assert response.status_code == 302 and response.url == "/profile/"
    alice.refresh_from_db()
    assert alice.email == "alice@new.example"
    page = client.get("/profile/").content.decode()
    assert "Your e-mail address is now alice@new.example." in page
    assert 'value="alice@new.example"' in page


def test_the_change_is_on_the_record_as_theirs(alice, login):
    save_email(login(alice), "alice@new.example")
    (changed,) = AuditEvent.objects.filter(action="user_changed", owner=alice)
    assert changed.actor == alice and changed.actor_ip == "198.51.100.7"
    assert changed.details["email"] == {"before": "alice@example.com", "after": "alice@new.example"}


@pytest.mark.parametrize(
    ("email", "says"),
    [("not-an-address", "Enter a valid email address."), ("", "Enter your e-mail address")],
    ids=["malformed", "empty"],
)
def test_a_bad_address_is_refused_next_to_its_field(alice, login, email, says):
    response = save_email(login(alice), email)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<title>Error: Profile" in page
    field = page[page.index('<label for="id_email">') :]
    assert says in field[: field.index("</div>")]  # beside the field, not only in a summary
    assert 'href="#id_email"' in page  # the summary links to it
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    assert not AuditEvent.objects.filter(action="user_changed").exists()


def test_an_auditor_sees_the_address_but_may_not_change_it(dave, login):
    client = login(dave)
    assert 'action="/profile/email/"' not in client.get("/profile/").content.decode()
    assert save_email(client, "dave@new.example").status_code == 403
    dave.refresh_from_db()
    assert dave.email == "dave@example.com"


def test_expiry_reminders_reach_the_address_set_on_the_profile(alice, login, make_key, today):
    save_email(login(alice), "alice@new.example")
    make_key(alice, expires_on=today + datetime.timedelta(days=7))
    call_command("send_expiry_reminders", stdout=io.StringIO())
    (reminder,) = mail.outbox
    assert reminder.to == ["alice@new.example"]
