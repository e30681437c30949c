"""A key that may rotate itself stays its owner's (docs/design.md §8, self-rotation).

Tried as an attacker holding a leaked password would, over HTTP: the owner regenerated the
password because it leaked, the overlap keeps the leaked one working for an hour, and the
attacker calls POST /api/v1/self/rotate with it. Time moves with time_machine.
"""

import datetime
import json

import pytest
from django.core import mail
from django.test import Client

from keys.models import AuditEvent
from tests.api_calls import basic, call

WHOAMI = "/api/v1/whoami"
ROTATE = "/api/v1/self/rotate"


@pytest.fixture
def robot(alice, make_key, time_machine):
    """Alice's key that may rotate itself, and its first password."""
    time_machine.move_to(datetime.datetime(2030, 3, 4, 9, 0, tzinfo=datetime.UTC), tick=False)
    return make_key(alice, name="Robot", may_rotate_itself=True)


def status(identifier: str, password: str) -> int:
    return call(Client(), WHOAMI, identifier, password).status_code


def rotate(identifier: str, password: str, overlap_seconds: int = 0):
    return Client().post(
        ROTATE,
        data=json.dumps({"overlap_seconds": overlap_seconds}),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(identifier, password),
    )


def later(time_machine, **delta) -> None:
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(**delta))


def refusal_reasons(key) -> list[str]:
    events = AuditEvent.objects.filter(key=key, action="use_denied").order_by("seq")
    return [event.details["reason"] for event in events]


def test_the_leaked_previous_password_cannot_take_the_key_back(alice, login, robot):
    key, leaked = robot
    assert status(key.identifier, leaked) == 200  # the attacker's copy works: it leaked
    page = login(alice).post(f"/keys/{key.identifier}/regenerate/", {"overlap": "1 hour"})
    fresh = page.context["password"]

    first = rotate(key.identifier, leaked)  # verified with Argon2 as the previous password
    second = rotate(key.identifier, leaked)  # remembered by the verification cache

    for refused in (first, second):
        assert refused.status_code == 403
        assert refused["Content-Type"] == "application/problem+json"
        assert "password" not in refused.json()
    assert status(key.identifier, fresh) == 200  # the owner's new password lives on
    assert status(key.identifier, leaked) == 200  # the overlap the owner chose still runs
    assert not AuditEvent.objects.filter(
        key=key, action="password_regenerated", details__by="the key itself"
    ).exists()
    assert refusal_reasons(key) == ["rotation_by_previous_password"]
    detail = login(alice).get(f"/keys/{key.identifier}/").text
    assert "Tried to rotate itself with its previous password" in detail
    assert mail.outbox == []


def test_the_current_password_still_rotates_during_an_overlap(alice, login, robot):
    key, leaked = robot
    page = login(alice).post(f"/keys/{key.identifier}/regenerate/", {"overlap": "1 hour"})
    fresh = page.context["password"]

    rotated = rotate(key.identifier, fresh, overlap_seconds=600)

    assert rotated.status_code == 200
    newest = rotated.json()["password"]
    assert status(key.identifier, newest) == 200
    assert status(key.identifier, fresh) == 200  # now the previous one, for 600 s
    assert status(key.identifier, leaked) == 401  # a second regeneration ends the first overlap


def test_a_key_rotates_itself_at_most_once_a_minute(alice, login, robot, time_machine):
    key, password = robot
    first = rotate(key.identifier, password, overlap_seconds=3600)
    assert first.status_code == 200
    newest = first.json()["password"]

    later(time_machine, seconds=45)
    again = rotate(key.identifier, newest)

    assert again.status_code == 429
    assert again["Content-Type"] == "application/problem+json"
    assert again["Retry-After"] == "15"
    assert "password" not in again.json()
    assert status(key.identifier, newest) == 200
    assert status(key.identifier, password) == 200  # the first rotation's overlap stands
    assert refusal_reasons(key) == ["rotation_too_soon"]
    detail = login(alice).get(f"/keys/{key.identifier}/").text
    assert "Tried to rotate itself again within a minute" in detail

    later(time_machine, seconds=15)
    assert rotate(key.identifier, newest).status_code == 200


def test_the_owners_own_regeneration_does_not_hold_back_the_next_rotation(alice, login, robot):
    key, _password = robot
    page = login(alice).post(f"/keys/{key.identifier}/regenerate/", {"overlap": "none"})
    assert rotate(key.identifier, page.context["password"]).status_code == 200


def test_the_owner_is_mailed_on_every_self_rotation_without_the_password(
    alice, robot, time_machine
):
    key, password = robot
    passwords = [password]
    for _ in range(2):
        rotated = rotate(key.identifier, passwords[-1], overlap_seconds=300)
        assert rotated.status_code == 200
        passwords.append(rotated.json()["password"])
        later(time_machine, minutes=1)

    assert len(mail.outbox) == 2
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert "Robot" in message.subject and "rotated" in message.subject
    assert key.identifier in message.body and "127.0.0.1" in message.body
    assert "2030-03-04 10:05" in message.body  # the overlap's end, in the portal's zone
    assert f"/keys/{key.identifier}/" in message.body
    for sent in mail.outbox:
        for secret in passwords:
            assert secret not in sent.body and secret not in sent.subject


def test_a_rotation_that_stopped_the_old_password_at_once_says_so(alice, robot):
    key, password = robot
    assert rotate(key.identifier, password, overlap_seconds=0).status_code == 200
    assert "stopped working at once" in mail.outbox[0].body
