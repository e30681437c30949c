"""No password ever reaches a log: the whole journey with every logger at DEBUG, SQL included."""

import datetime
import logging
import re

import pytest
from django.db import connection

from keys.models import Api
from tests.api_calls import basic

PORTAL_PASSWORD = "alice-portal-pw"
MISTYPED_PASSWORD = "alice-portal-pw-typo"


class Everything(logging.Handler):
    """Keeps every record as the console handler would print it, traceback included."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs():
    """Every logger at DEBUG into one handler, SQL with parameters included; restored after."""
    handler = Everything()
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
        if not lg.propagate:
            lg.addHandler(handler)
    logging.getLogger().addHandler(handler)
    connection.force_debug_cursor = True
    yield handler
    connection.force_debug_cursor = False
    for lg, level, disabled in saved:
        lg.setLevel(level)
        lg.disabled = disabled
        lg.removeHandler(handler)


def test_the_whole_journey_logs_no_password(alice, client, logs):
    # A mistyped log-in, then the right one.
    client.post("/login/", {"username": "alice", "password": MISTYPED_PASSWORD})
    response = client.post("/login/", {"username": "alice", "password": PORTAL_PASSWORD})
    assert response.status_code == 302

    # Create a key: the one response that shows its password.
    response = client.post(
        "/keys/add/",
        {
            "name": "Logged journey",
            "expires_on": (datetime.date.today() + datetime.timedelta(days=10)).isoformat(),
            "allowed_ips": ["127.0.0.1"],
            "apis": [str(Api.objects.get(slug="risks").pk)],
        },
    )
    html = response.content.decode()
    identifier = re.search(r'id="identifier" type="text" value="(ckid_\w+)"', html).group(1)
    password = re.search(r'id="password" type="text" value="(ckpw_\w+)"', html).group(1)

    # Use it: a good call twice (Argon2, then the verification cache), a wrong password,
    # credentials in the query string, and a call to an API the key lacks.
    for _ in range(2):
        response = client.get("/api/v1/risks", HTTP_AUTHORIZATION=basic(identifier, password))
        assert response.status_code == 200
    wrong = password[:-7] + ("A" if password[-7] != "A" else "B") + password[-6:]
    client.get("/api/v1/risks", HTTP_AUTHORIZATION=basic(identifier, wrong))
    client.get(f"/api/v1/risks?identifier={identifier}&password={password}")
    client.get("/api/v1/controls", HTTP_AUTHORIZATION=basic(identifier, password))

    # Look, edit, revoke, log out.
    client.get(f"/keys/{identifier}/")
    client.post(f"/keys/{identifier}/revoke/", {})
    client.get("/api/v1/risks", HTTP_AUTHORIZATION=basic(identifier, password))
    client.post("/logout/")

    logged = logs.text
    assert 'INSERT INTO "keys_apikey"' in logged, "SQL with parameters was not captured"
    assert identifier in logged  # the public identifier may appear; the secrets never
    for secret in (PORTAL_PASSWORD, MISTYPED_PASSWORD, password, password[5:45], wrong):
        assert secret not in logged
