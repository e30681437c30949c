"""The plaintext password exists in the one response that shows it, and nowhere else."""

import datetime
import logging
import re

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection

from keys.models import Api


def every_stored_value() -> str:
    """Every cell of every table, as text."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 (names from introspection)
            for row in cursor.fetchall():
                cells.extend(str(cell) for cell in row)
    return "\n".join(cells)


def locmem_cache_contents() -> bytes:
    # The test run uses LocMemCache: its store is a dict of pickled values.
    store = getattr(cache, "_cache", {})
    return b"\n".join(
        [str(k).encode() for k in store]
        + [v if isinstance(v, bytes) else b"" for v in store.values()]
    )


@pytest.fixture
def created(alice, client, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    # Log every SQL statement with its parameters too, as DEBUG=True would.
    connection.force_debug_cursor = True
    client.force_login(alice)
    today = datetime.date.today()
    response = client.post(
        "/keys/add/",
        {
            "name": "Secret keeper",
            "expires_on": (today + datetime.timedelta(days=10)).isoformat(),
            "allowed_ips": ["127.0.0.1"],
            "apis": [str(Api.objects.get(slug="risks").pk)],
        },
    )
    html = response.content.decode()
    password = re.search(r'id="password" type="text" value="(ckpw_\w+)"', html).group(1)
    # Later pages, including one that writes a flash message, after the creation.
    client.get("/keys/")
    connection.force_debug_cursor = False
    return client, response, password


def test_password_is_in_the_creation_response(created):
    _client, response, password = created
    assert password in response.content.decode()


def test_password_is_nowhere_in_the_database(created):
    _client, _response, password = created
    stored = every_stored_value()
    assert "Secret keeper" in stored  # the scan does see the key's row
    assert password not in stored
    assert password[5:] not in stored


def test_password_is_not_in_the_session_or_cookies(created):
    client, response, password = created
    for session in Session.objects.all():
        assert password not in str(session.get_decoded())
    assert password not in str(response.cookies)
    assert password not in str(client.cookies)


def test_password_is_not_in_messages(created):
    client, _response, password = created
    identifier = re.search(r"/keys/(ckid_\w+)/", _response.content.decode()).group(1)
    client.post(f"/keys/{identifier}/edit/", {})  # stays on the form, writes nothing
    response = client.post(f"/keys/{identifier}/revoke/", follow=True)
    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["The key “Secret keeper” was revoked."]
    assert all(password not in message for message in shown)


def test_password_is_not_in_the_logs(created, caplog):
    _client, _response, password = created
    logged = "\n".join(r.getMessage() for r in caplog.get_records("setup"))
    assert 'INSERT INTO "keys_apikey"' in logged  # SQL with parameters was captured
    assert password not in logged
    assert password[5:] not in logged


def test_password_is_not_in_the_cache(created):
    _client, _response, password = created
    assert password.encode() not in locmem_cache_contents()
