"""Calling the protected API from tests: the Basic header, and what every refusal shares."""

import base64
import contextlib
import json
from unittest import mock

from keys import tokens


def basic(identifier: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{identifier}:{password}".encode()).decode()


def call(client, path: str, identifier: str | None = None, password: str | None = None, **extra):
    """GET `path` as curl -u IDENTIFIER:PASSWORD would, from extra's REMOTE_ADDR (127.0.0.1)."""
    method = extra.pop("method", "get")
    if identifier is not None:
        extra["HTTP_AUTHORIZATION"] = basic(identifier, password or "")
    return getattr(client, method)(path, **extra)


def assert_the_401(response) -> None:
    """The one 401 of every failure before the password is verified."""
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Basic realm="Key Portal API", charset="UTF-8"'
    if response.request["REQUEST_METHOD"] == "HEAD":
        return
    assert json.loads(response.content) == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": (
            "Valid API key credentials are required (HTTP Basic: Identifier:Password), sent "
            "from one of the key's allowed IPs. See the key's page in the portal for why this "
            "call was refused."
        ),
    }


@contextlib.contextmanager
def argon2_verifications():
    """Count the Argon2 verifications made inside the block: a spy on the real one."""
    with mock.patch.object(tokens, "verify_password", wraps=tokens.verify_password) as spy:
        yield spy
