"""Leaked-key reports (POST /api/v1/leaks), signed as GitHub's secret scanning signs them."""

import datetime
import hashlib
import json

import pytest
import time_machine
from django.core import mail
from django.test import Client

from keys import actions, tokens
from keys.api import leak_queue, leaks
from keys.models import ApiKey, AuditEvent
from tests.api_calls import argon2_verifications, assert_the_401, call
from tests.leak_reports import LEAKS, Scanner, match

RISKS = "/api/v1/risks/"
URL = "https://github.com/octo/app/blob/abc123/settings.py"


def labels(response) -> list[tuple[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return [(item["token_hash"], item["label"]) for item in json.loads(response.content)]


def hashed(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def assert_problem(response, status: int) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["status"] == status


def revoked(key: ApiKey) -> bool:
    key.refresh_from_db()
    return key.is_revoked


# --- true positives ---------------------------------------------------------------------------


def test_a_reported_password_of_a_live_key_revokes_it_mails_its_owner_and_is_audited(
    client, alice, make_key, scanner
):
    key, password = make_key(alice, name="Billing sync")

    response = scanner.post(client, [match(password, URL)])

    assert json.loads(response.content) == [
        {
            "token_hash": hashed(password),
            "token_type": "key_portal_password",
            "label": "true_positive",
        }
    ]
    assert password.encode() not in response.content
    key.refresh_from_db()
    assert key.is_revoked
    assert key.revoked_by is None
    assert key.revoke_reason == f"reported leaked at {URL}"
    event = AuditEvent.objects.filter(key=key).order_by("-seq").first()
    assert event.action == AuditEvent.Action.KEY_REVOKED
    assert event.actor_id is None
    assert event.actor_label == "leak report"
    assert event.actor_ip == "127.0.0.1"
    assert event.details == {"reason": f"reported leaked at {URL}"}
    [sent] = mail.outbox
    assert sent.to == ["alice@example.com"]
    assert "Billing sync" in sent.subject and "revoked" in sent.subject
    assert key.identifier in sent.body and URL in sent.body
    assert password not in sent.body


def test_the_leaked_key_s_next_api_call_gets_the_401(client, alice, make_key, scanner):
    key, password = make_key(alice)
    assert call(client, RISKS, key.identifier, password).status_code == 200  # verified, cached

    scanner.post(client, [match(password)])

    assert_the_401(call(client, RISKS, key.identifier, password))


def test_a_password_reported_twice_in_one_report_revokes_and_mails_once(
    client, alice, make_key, scanner
):
    key, password = make_key(alice)
    response = scanner.post(client, [match(password, URL), match(password, URL + "#L2")])
    assert labels(response) == [(hashed(password), "true_positive")] * 2
    assert revoked(key)
    assert len(mail.outbox) == 1
    assert AuditEvent.objects.filter(key=key, action=AuditEvent.Action.KEY_REVOKED).count() == 1


def test_only_the_reported_key_is_revoked(client, alice, bob, make_key, scanner):
    leaked, password = make_key(alice)
    other, _ = make_key(bob)
    scanner.post(client, [match(password)])
    assert revoked(leaked)
    assert not revoked(other)


def test_control_characters_in_the_url_stay_out_of_the_reason(client, alice, make_key, scanner):
    key, password = make_key(alice)
    scanner.post(client, [match(password, "https://example.com/a\r\nBcc: x@example.com")])
    key.refresh_from_db()
    assert key.revoke_reason == "reported leaked at https://example.com/aBcc: x@example.com"


def test_an_already_revoked_key_s_password_is_a_true_positive_and_changes_nothing(
    client, alice, make_key, scanner
):
    key, password = make_key(alice)
    actions.revoke_key(key, actor=alice, reason="no longer needed")
    events = AuditEvent.objects.count()

    response = scanner.post(client, [match(password)])

    assert labels(response) == [(hashed(password), "true_positive")]
    key.refresh_from_db()
    assert key.revoke_reason == "no longer needed"
    assert key.revoked_by == alice
    assert AuditEvent.objects.count() == events
    assert mail.outbox == []


def test_an_expired_key_s_password_is_a_true_positive_and_changes_nothing(
    client, alice, make_key, scanner
):
    key, password = make_key(alice, expires_on=datetime.date(2027, 3, 10))
    with time_machine.travel(datetime.datetime(2027, 3, 11, 12, tzinfo=datetime.UTC)):
        response = scanner.post(client, [match(password)])
    assert labels(response) == [(hashed(password), "true_positive")]
    assert not revoked(key)
    assert mail.outbox == []


def test_the_leak_mail_names_the_apis(client, alice, make_key, scanner):
    _key, password = make_key(alice, apis=("kris",))
    scanner.post(client, [match(password, "https://example.com/leak")])
    (message,) = mail.outbox
    assert "Its APIs: Key risk indicators." in message.body


# --- false positives --------------------------------------------------------------------------


def test_a_reported_identifier_alone_is_a_false_positive(client, alice, make_key, scanner):
    key, _password = make_key(alice)
    response = scanner.post(client, [match(key.identifier)])
    assert labels(response) == [(hashed(key.identifier), "false_positive")]
    assert not revoked(key)
    assert mail.outbox == []


def test_tokens_that_are_no_key_s_password_are_false_positives(client, alice, make_key, scanner):
    key, password = make_key(alice)
    made_up = tokens.generate_identifier()
    typo = password[:30] + ("a" if password[30] != "a" else "b") + password[31:]
    reported = [
        "NMIfyYncKcRALEXAMPLE",
        tokens.generate_password(key.identifier),  # names the key, but is not its password
        tokens.generate_password(made_up),  # names no key
        typo,
        password[:-1],
        "",
    ]
    response = scanner.post(client, [match(token) for token in reported])
    assert labels(response) == [(hashed(token), "false_positive") for token in reported]
    assert not revoked(key)
    assert mail.outbox == []


def test_an_old_layout_password_still_works_but_cannot_be_traced_to_its_key(
    client, alice, make_key, scanner, monkeypatch
):
    # Keys made before passwords named their key: ckpw_ + 40 random + checksum.
    old_layout = tokens._with_checksum("ckpw_" + "A1b2C3d4E5" * 4)
    assert tokens.is_password(old_layout) and len(old_layout) == tokens.LEGACY_PASSWORD_LENGTH
    monkeypatch.setattr(tokens, "generate_password", lambda identifier: old_layout)
    key, password = make_key(alice)
    assert password == old_layout

    assert call(client, RISKS, key.identifier, password).status_code == 200
    response = scanner.post(client, [match(password)])
    assert labels(response) == [(hashed(password), "false_positive")]
    assert call(client, RISKS, key.identifier, password).status_code == 200


def test_an_empty_report_is_answered_with_an_empty_list(client, db, scanner):
    assert labels(scanner.post(client, [])) == []


# --- the password names its key ---------------------------------------------------------------


def test_a_new_password_names_its_key(alice, make_key):
    key, password = make_key(alice)
    assert tokens.identifier_of(password) == key.identifier
    assert tokens.identifier_of(key.identifier) is None


def test_a_password_naming_another_key_gets_the_401_without_a_lookup(
    client, alice, make_key, django_assert_num_queries
):
    first, _password = make_key(alice, name="First")
    _second, second_password = make_key(alice, name="Second")
    with django_assert_num_queries(0):
        assert_the_401(call(client, RISKS, first.identifier, second_password))


# --- refused reports --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "refusal", ["not_base64", "truncated", "signature_of_a_signature", "unknown_key_identifier"]
)
def test_a_report_without_a_valid_signature_is_refused_with_401(
    client, alice, make_key, scanner, refusal
):
    key, password = make_key(alice)
    body = json.dumps([match(password)]).encode()
    signature = scanner.sign(body)
    headers = {
        "not_base64": {"signature": "not base64!"},
        "truncated": {"signature": signature[:-8]},
        "signature_of_a_signature": {"signature": scanner.sign(signature.encode())},
        "unknown_key_identifier": {"key_identifier": "some-other-key"},
    }[refusal]
    assert_problem(scanner.post(client, body, **headers), 401)
    assert not revoked(key)


def test_a_report_signed_by_a_key_the_operator_did_not_configure_is_refused(
    client, alice, make_key, scanner
):
    key, password = make_key(alice)
    impostor = Scanner(key_identifier=scanner.key_identifier)  # same id, another key pair
    assert_problem(impostor.post(client, [match(password)]), 401)
    assert not revoked(key)


def test_a_signature_of_another_body_is_refused(client, alice, make_key, scanner):
    key, password = make_key(alice)
    body = json.dumps([match(password)]).encode()
    signature = scanner.sign(json.dumps([match(key.identifier)]).encode())
    assert_problem(scanner.post(client, body, signature=signature), 401)
    assert not revoked(key)


def test_a_report_without_signature_headers_is_refused(client, alice, make_key, scanner):
    key, password = make_key(alice)
    response = client.post(LEAKS, [match(password)], content_type="application/json")
    assert_problem(response, 401)
    assert not revoked(key)


def test_every_report_is_refused_while_no_public_keys_are_configured(
    client, alice, make_key, scanner, settings
):
    key, password = make_key(alice)
    settings.KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE = ""
    assert_problem(scanner.post(client, [match(password)]), 401)
    settings.KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE = "/nonexistent/keys.json"
    assert_problem(scanner.post(client, [match(password)]), 401)
    assert not revoked(key)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"token": "x"}',
        b'["x"]',
        b'[{"type": "t"}]',
        b'[{"token": 5}]',
        b'[{"token": "x", "url": ["y"]}]',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_a_signed_but_malformed_report_is_a_400_problem(client, db, scanner, body):
    assert_problem(scanner.post(client, body), 400)


def test_a_report_larger_than_the_cap_is_a_413_problem(client, db, scanner):
    body = json.dumps([match("x" * 300_000)]).encode()
    assert_problem(scanner.post(client, body), 413)


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post_is_allowed(client, db, scanner, method):
    response = getattr(client, method)(LEAKS)
    assert_problem(response, 405)
    assert response["Allow"] == "POST"


def test_a_report_needs_no_csrf_token_nor_key_credentials(alice, make_key, scanner):
    _key, password = make_key(alice)
    strict = Client(enforce_csrf_checks=True)
    assert labels(scanner.post(strict, [match(password)])) == [(hashed(password), "true_positive")]


def test_a_previous_password_still_in_its_overlap_is_a_leak_of_the_key(
    client, alice, make_key, scanner
):
    key, old_password = make_key(alice)
    actions.regenerate_password(key, actor=alice, overlap=datetime.timedelta(hours=1))
    response = scanner.post(client, [match(old_password, URL)])
    assert labels(response) == [(hashed(old_password), "true_positive")]
    assert revoked(key)


# --- a long report is answered at once, and judged to the end after ---------------------------


@pytest.fixture
def judged_after():
    """Waits, after the test, until the tokens left for after the answer are judged."""
    yield leak_queue.wait
    assert leak_queue.wait(60), "reported tokens still waiting to be judged"


def wrong_passwords(key: ApiKey, count: int) -> list[str]:
    """Well-formed passwords naming the key, each one Argon2 verification to rule out."""
    return [tokens.generate_password(key.identifier) for _ in range(count)]


@pytest.mark.django_db(transaction=True)
def test_a_report_of_many_wrong_passwords_is_answered_after_a_few_argon2_checks(
    alice, make_key, scanner, judged_after
):
    key, password = make_key(alice, name="Billing sync")
    reported = [*wrong_passwords(key, 2 * leaks.VERIFICATIONS_IN_REQUEST), password]

    response = scanner.post(Client(), [match(token, URL) for token in reported])

    answered = labels(response)
    assert len(answered) == leaks.VERIFICATIONS_IN_REQUEST  # the rest: judged after answering
    assert answered == [(hashed(token), "false_positive") for token in reported[: len(answered)]]
    assert hashed(password) not in dict(answered)
    assert judged_after(60)
    assert revoked(key)  # the leaked password, last in the report, revoked all the same
    assert AuditEvent.objects.get(key=key, action="key_revoked").actor_label == "leak report"
    [sent] = mail.outbox
    assert sent.to == ["alice@example.com"] and password not in sent.body


@pytest.mark.django_db(transaction=True)
def test_passwords_of_usable_keys_are_judged_before_answering(
    alice, bob, make_key, scanner, judged_after
):
    old, _ = make_key(bob, name="Old")
    actions.revoke_key(old, actor=bob)
    live, password = make_key(alice, name="Live")
    reported = [*wrong_passwords(old, leaks.VERIFICATIONS_IN_REQUEST + 5), password]

    response = scanner.post(Client(), [match(token, URL) for token in reported])

    assert (hashed(password), "true_positive") in labels(response)
    assert revoked(live)


@pytest.mark.django_db(transaction=True)
def test_tokens_that_name_no_stored_key_cost_nothing_and_are_all_answered(
    alice, make_key, scanner, judged_after
):
    _key, password = make_key(alice)
    made_up = [tokens.generate_password(tokens.generate_identifier()) for _ in range(100)]
    with argon2_verifications() as argon2:
        response = scanner.post(Client(), [match(token) for token in [*made_up, password]])
        assert judged_after(60)
    assert len(labels(response)) == 101
    assert argon2.call_count == 1


def test_a_report_the_queue_has_no_room_for_is_refused_untouched(
    client, alice, make_key, scanner, monkeypatch
):
    key, password = make_key(alice)
    monkeypatch.setattr(leak_queue, "MAX_PENDING", 0)
    reported = [password, *wrong_passwords(key, leaks.VERIFICATIONS_IN_REQUEST)]

    response = scanner.post(client, [match(token) for token in reported])

    assert_problem(response, 503)
    assert response["Retry-After"] == "60"
    assert not revoked(key)  # nothing judged: the scanner sends it again
