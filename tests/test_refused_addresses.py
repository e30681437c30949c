"""Nobody plants an address on a key's page (docs/design.md §8, least privilege).

A key's Identifier is public. Tried as someone who knows only that would, over HTTP: they send
a well-formed wrong password from an address of their choosing, hoping its owner allows it
with one click. The page offers one-click allow only for an address whose caller proved the
password (the verification cache says so, at no Argon2 cost), and the history calls any
other caller an unauthenticated caller, not the key.
"""

import pytest
from django.test import Client

from keys import tokens
from keys.models import AuditEvent
from tests.api_calls import call

WHOAMI = "/api/v1/whoami"
INTEGRATION = "127.0.0.1"
ELSEWHERE = "203.0.113.9"


@pytest.fixture
def key(alice, make_key):
    return make_key(alice, name="Billing export", networks=(INTEGRATION,))


def from_address(key_id: str, password: str, ip: str) -> int:
    return call(Client(), WHOAMI, key_id, password, REMOTE_ADDR=ip).status_code


def refused_rows(page) -> list[tuple[str, bool]]:
    return [(caller.ip, caller.password_proved) for caller, _ in page.context["refused_addresses"]]


def allow_forms_for(page, address: str) -> bool:
    return f'name="network" value="{address}"' in page.text


def denied_events(key) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(key=key, action="use_denied").order_by("seq"))


def test_a_wrong_password_from_anywhere_gets_no_one_click_allow(alice, login, key):
    identifier = key[0].identifier
    guess = tokens.generate_password(identifier)  # well formed, checksum right, wrong
    assert from_address(identifier, guess, ELSEWHERE) == 401

    page = login(alice).get(f"/keys/{identifier}/")

    assert "Allow this address" not in page.text
    assert not allow_forms_for(page, ELSEWHERE) and not allow_forms_for(page, "203.0.113.0/24")
    assert refused_rows(page) == [(ELSEWHERE, False)]
    assert "No one-click allow: password not checked" in page.text
    assert "may be someone else's" in page.text  # the page says why


def test_the_history_calls_such_a_caller_unauthenticated_not_the_key(alice, login, key):
    identifier = key[0].identifier
    assert from_address(identifier, tokens.generate_password(identifier), ELSEWHERE) == 401

    (event,) = denied_events(key[0])
    assert event.actor_label == "unauthenticated caller" and event.actor_ip == ELSEWHERE
    page = login(alice).get(f"/keys/{identifier}/").text
    assert "Use denied</strong> by an unauthenticated caller from" in page
    assert f"by api:{identifier}" not in page


def test_an_integration_that_proved_its_password_is_offered_its_new_address(alice, login, key):
    identifier, password = key[0].identifier, key[1]
    assert from_address(identifier, password, INTEGRATION) == 200  # verified and remembered
    assert from_address(identifier, password, ELSEWHERE) == 401  # moved to a new server

    page = login(alice).get(f"/keys/{identifier}/")

    assert refused_rows(page) == [(ELSEWHERE, True)]
    assert "Allow this address" in page.text and allow_forms_for(page, "203.0.113.0/24")
    assert [event.actor_label for event in denied_events(key[0])] == [f"api:{identifier}"]


def test_the_right_password_never_checked_is_not_taken_for_proof(alice, login, key):
    """No Argon2 for an address that is not allowed: unverified, even the right password
    proves nothing, so the page cannot tell it from a guess."""
    identifier, password = key[0].identifier, key[1]
    assert from_address(identifier, password, ELSEWHERE) == 401
    page = login(alice).get(f"/keys/{identifier}/")
    assert refused_rows(page) == [(ELSEWHERE, False)]
    assert "Allow this address" not in page.text


def test_a_planted_address_becomes_allowable_once_the_integration_proves_itself_there(
    alice, login, key
):
    identifier, password = key[0].identifier, key[1]
    assert from_address(identifier, tokens.generate_password(identifier), ELSEWHERE) == 401
    assert from_address(identifier, password, INTEGRATION) == 200
    assert from_address(identifier, password, ELSEWHERE) == 401
    assert from_address(identifier, tokens.generate_password(identifier), ELSEWHERE) == 401

    page = login(alice).get(f"/keys/{identifier}/")
    assert refused_rows(page) == [(ELSEWHERE, True)]  # a later guess does not undo the proof
    assert page.context["refused_addresses"][0][0].calls == 3


def test_the_previous_password_proves_nothing_about_a_new_address(alice, login, key):
    """After a regeneration (often: the old password leaked), the old one still opens the key
    for the overlap, but an address it calls from is not offered for one-click allow."""
    identifier, leaked = key[0].identifier, key[1]
    login(alice).post(f"/keys/{identifier}/regenerate/", {"overlap": "1 hour"})
    assert from_address(identifier, leaked, INTEGRATION) == 200  # proved as the previous one
    assert from_address(identifier, leaked, ELSEWHERE) == 401

    page = login(alice).get(f"/keys/{identifier}/")
    assert refused_rows(page) == [(ELSEWHERE, False)]
    assert "Allow this address" not in page.text
