"""/healthz answers while the process runs; /readyz only while the database and cache answer."""

import pytest
from django.db import OperationalError, connection


def test_healthz_answers_without_a_log_in_and_without_the_database(client, monkeypatch):
    monkeypatch.setattr(connection, "cursor", _unreachable)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_answers_ok_when_database_and_cache_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok"}


@pytest.mark.django_db
def test_readyz_answers_503_when_the_database_is_unreachable(client, monkeypatch):
    monkeypatch.setattr(connection, "cursor", _unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unavailable", "cache": "ok"}
    assert b"Traceback" not in response.content


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_answers_503_when_redis_is_down(client, own_redis_server, point_cache):
    point_cache(own_redis_server.url)
    assert client.get("/readyz").status_code == 200
    own_redis_server.stop()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["cache"] == "unavailable"
    assert response.json()["database"] == "ok"


def test_probes_only_answer_get(client, db):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


def test_probes_are_not_redirected_to_https(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/login/").status_code == 301


def _unreachable(*args, **kwargs):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")
