import datetime

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache

from keys import actions
from keys.models import Api, latest_expiry_for, local_date

# Real redis-server for `redis` tests, the `postgres_only` marker: see tests/servers.py.
# Chromium, log-in and axe-core checks for `browser` tests: see tests/browser.py.
# A real OpenID Provider (oidc-provider on Node.js) for single sign-on: tests/oidc_server.py.
# Real audit receivers (HTTPS and rsyslog): tests/stream_receivers.py.
pytest_plugins = ["tests.servers", "tests.browser", "tests.oidc_server", "tests.stream_receivers"]


@pytest.fixture(autouse=True)
def _clear_cache():
    from keys.api import routes, usage
    from keys.lib.cache_counters import fallback, here

    for store in (cache, fallback, here):
        store.clear()
    usage.forget()  # counts of a previous test's keys, whose ids this test's keys reuse
    routes.forget()
    yield
    for store in (cache, fallback, here):
        store.clear()


def _persona(django_user_model, username: str, role: str | None):
    """A persona, written straight to the database like a fixture file would be.

    bulk_create sends no signals, so the personas' creation is not in the audit history:
    each test's history holds what the test itself did (tests/test_user_events.py creates
    and changes people through the audited paths).
    """
    user = django_user_model(username=username, email=f"{username}@example.com")
    user.set_password(f"{username}-portal-pw")
    (user,) = django_user_model.objects.bulk_create([user])
    if role:
        membership = django_user_model.groups.through
        membership.objects.bulk_create(
            [membership(user_id=user.pk, group_id=Group.objects.get(name=role).pk)]
        )
    return user


@pytest.fixture
def alice(db, django_user_model):
    """Staff: manages her own keys."""
    return _persona(django_user_model, "alice", "staff")


@pytest.fixture
def bob(db, django_user_model):
    """Other staff: must never reach Alice's keys."""
    return _persona(django_user_model, "bob", "staff")


@pytest.fixture
def carol(db, django_user_model):
    """Admin."""
    return _persona(django_user_model, "carol", "admin")


@pytest.fixture
def dave(db, django_user_model):
    """Auditor: reads everything, changes nothing."""
    return _persona(django_user_model, "dave", "auditor")


@pytest.fixture
def make_user(db, django_user_model):
    """More people made like the personas: make_user("erin", "staff"), password erin-portal-pw."""

    def _make_user(username: str, role: str | None = None):
        return _persona(django_user_model, username, role)

    return _make_user


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def make_key(db):
    """Create a key through the real action; returns (key, password)."""

    def _make_key(owner, name="CI pipeline", apis=("risks",), networks=("127.0.0.1",), **kw):
        expires_on = kw.pop("expires_on", None) or latest_expiry_for(local_date())
        return actions.create_key(
            owner=owner,
            name=name,
            expires_on=expires_on,
            networks=list(networks),
            apis=list(Api.objects.filter(slug__in=apis)),
            **kw,
        )

    return _make_key


@pytest.fixture
def pipeline(alice, make_key):
    """Alice's key "Pipeline" (Risks and Key risk indicators): event 1 of the history."""
    return make_key(alice, name="Pipeline", apis=("risks", "kris"))[0]


@pytest.fixture
def reports(bob, make_key):
    """Bob's key "Reports": event 2 of the history (after `pipeline`)."""
    return make_key(bob, name="Reports")[0]


@pytest.fixture
def today() -> datetime.date:
    return local_date()


@pytest.fixture
def scanner(settings, tmp_path):
    """A secret scanner whose public key the operator configured (tests/leak_reports.py)."""
    import json

    from tests.leak_reports import Scanner

    found = Scanner()
    path = tmp_path / "secret_scanning_keys.json"
    path.write_text(json.dumps(found.public_keys_document()))
    settings.KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE = str(path)
    return found
