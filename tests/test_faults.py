"""Database faults: a failure in the middle of creating a key leaves nothing behind and shows
nothing secret; an unreachable database is a clear 503, never a traceback."""

import datetime
import logging

import pytest
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.test import Client

from keys import tokens
from keys.audit import chain
from keys.models import AllowedIp, Api, ApiKey, AuditEvent, AuditHead
from tests.api_calls import basic


@pytest.fixture
def generated_passwords(monkeypatch) -> list[str]:
    """Every password the portal generates during the test, to look for it afterwards."""
    seen: list[str] = []
    real = tokens.generate_password

    def remembering(identifier):
        seen.append(real(identifier))
        return seen[-1]

    monkeypatch.setattr(tokens, "generate_password", remembering)
    return seen


@pytest.fixture
def audit_write_fails(monkeypatch):
    """The audit append hits a real database error, after the key and its IPs were inserted."""

    def failing_record(*args, **kwargs):
        assert ApiKey.objects.exists(), "the key row should be written by now"
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM keys_no_such_table")

    monkeypatch.setattr(chain, "record", failing_record)


def add_form(today):
    return {
        "name": "Half-made key",
        "expires_on": (today + datetime.timedelta(days=30)).isoformat(),
        "allowed_ips": ["192.0.2.10"],
        "apis": [str(Api.objects.get(slug="risks").pk)],
    }


def test_a_database_error_mid_create_leaves_no_key_no_event_and_shows_no_password(
    alice, login, today, generated_passwords, audit_write_fails, caplog
):
    caplog.set_level(logging.DEBUG)
    head_before = AuditHead.objects.get(pk=1)

    response = login(alice).post("/keys/add/", add_form(today))

    assert response.status_code == 200
    html = response.content.decode()
    assert "The key could not be saved; nothing was changed. Try again." in html
    assert 'id="password"' not in html
    assert "ckpw_" not in html
    assert len(generated_passwords) == 1
    assert generated_passwords[0] not in html
    assert generated_passwords[0] not in caplog.text
    assert "no-store" in response["Cache-Control"]
    # The transaction rolled back as a whole, and the connection is usable again.
    assert ApiKey.objects.count() == 0
    assert AllowedIp.objects.count() == 0
    assert AuditEvent.objects.count() == 0
    head_after = AuditHead.objects.get(pk=1)
    assert (head_after.seq, head_after.hash) == (head_before.seq, head_before.hash)


def test_the_form_keeps_what_was_typed_after_a_database_error(
    alice, login, today, audit_write_fails
):
    html = login(alice).post("/keys/add/", add_form(today)).content.decode()
    assert 'value="Half-made key"' in html
    assert 'value="192.0.2.10"' in html


def test_after_a_failed_create_the_same_name_can_be_created(
    alice, login, today, monkeypatch, audit_write_fails
):
    client = login(alice)
    client.post("/keys/add/", add_form(today))
    monkeypatch.undo()
    response = client.post("/keys/add/", add_form(today))
    assert 'id="password"' in response.content.decode()
    assert ApiKey.objects.filter(owner=alice, name="Half-made key").count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.KEY_CREATED).count() == 1


class DatabaseDown:
    """Every SQL statement fails as it does when the server has gone away."""

    def __enter__(self):
        from unittest import mock

        error = OperationalError("server closed the connection unexpectedly")
        self.patches = [
            mock.patch.object(CursorWrapper, "execute", side_effect=error),
            mock.patch.object(CursorWrapper, "executemany", side_effect=error),
        ]
        for patch in self.patches:
            patch.start()
        return self

    def __exit__(self, *exc):
        for patch in self.patches:
            patch.stop()


def test_an_api_call_with_the_database_down_is_a_503_problem(client, alice, make_key):
    key, password = make_key(alice, apis=("risks",))
    with DatabaseDown():
        response = client.get("/api/v1/risks", HTTP_AUTHORIZATION=basic(key.identifier, password))
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "The service is temporarily unavailable; retry shortly.",
    }


def test_a_verified_key_is_not_let_through_when_the_database_goes_down(client, alice, make_key):
    # The verification cache holds this password now; the status and grants must still be
    # read from the database, so with it down the answer is 503, not 200.
    key, password = make_key(alice, apis=("risks",))
    auth = basic(key.identifier, password)
    assert client.get("/api/v1/risks", HTTP_AUTHORIZATION=auth).status_code == 200
    with DatabaseDown():
        response = client.get("/api/v1/risks", HTTP_AUTHORIZATION=auth)
    assert response.status_code == 503
    assert b"Traceback" not in response.content


def test_a_portal_page_with_the_database_down_is_a_503_page(alice):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    with DatabaseDown():
        response = client.get("/keys/")
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_other_server_errors_stay_500_without_a_traceback(alice, monkeypatch):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    monkeypatch.setattr("keys.views.render", _broken)
    response = client.get("/keys/")
    assert response.status_code == 500
    assert "Traceback" not in response.content.decode()


def _broken(*args, **kwargs):
    raise RuntimeError("a bug")
