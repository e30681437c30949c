"""App servers sharing one Redis (CACHE_URL=redis://…), as docs/deploy.md runs them.

Each server is a separate gunicorn process with production settings; they share one database
and one real redis-server. What one server counts or verifies, the other sees; and with
Redis gone, both still verify every password with Argon2 and never let a caller through.
"""

import json

import pytest
import redis

from tests.servers import KEYS_SETUP, AppServer, Keys, call, fetch, gunicorn, manage, manage_env

pytestmark = pytest.mark.redis

MAX_FAILURES_PER_KEY = 4


@pytest.fixture(scope="module")
def keys_and_env(tmp_path_factory, server_database_url, redis_server):
    directory = tmp_path_factory.mktemp("shared")
    env = manage_env(
        DATABASE_URL=server_database_url,
        CACHE_URL=redis_server.url,
        KEYS_THROTTLE_MAX_FAILURES_PER_KEY=str(MAX_FAILURES_PER_KEY),
        KEYS_THROTTLE_MAX_FAILURES_PER_IP="1000",
        LOGIN_THROTTLE_MAX_FAILURES="3",
        WORKERS="1",
        STATIC_ROOT=str(directory / "static"),
    )
    assert manage("migrate", "--noinput", env=env).returncode == 0
    assert manage("collectstatic", "--noinput", env=env).returncode == 0
    secrets_file = directory / "keys.json"  # passwords only in a file of mode 600
    created = manage("shell", "--no-imports", "-c", KEYS_SETUP % str(secrets_file), env=env)
    assert created.returncode == 0, created.stderr[-2000:]
    return Keys(json.loads(secrets_file.read_text())), env, directory


@pytest.fixture(scope="module")
def servers(keys_and_env):
    """A and C verify normally; B may not run Argon2 at all (0 slots), so any password it
    accepts it can only have taken from the cache another server filled."""
    keys, env, directory = keys_and_env
    started: list[AppServer] = []
    try:
        for name, extra in (
            ("a", {}),
            ("b", {"KEYS_MAX_CONCURRENT_VERIFICATIONS": "0"}),
            ("c", {}),
        ):
            started.append(gunicorn(env, directory, name, **extra))
        yield (*started, keys)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(autouse=True)
def _empty_redis(redis_server):
    client = redis.Redis(port=redis_server.port)
    client.flushdb()
    client.close()


def test_a_verification_on_one_server_serves_the_other(servers):
    a, b, _c, keys = servers
    assert call(b, keys, "first") == 503  # B cannot verify by itself: busy
    assert call(a, keys, "first") == 200
    assert call(b, keys, "first") == 200  # from the verification A left in Redis


def redis_commands(port: int) -> int:
    """Commands Redis has answered so far, other than INFO itself."""
    client = redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(stat["calls"] for name, stat in stats.items() if name != "cmdstat_info")


def test_a_warm_call_asks_redis_nothing(servers, redis_server):
    a, _b, _c, keys = servers
    assert call(a, keys, "third") == 200  # verified: remembered in Redis and by A itself
    before = redis_commands(redis_server.port)
    statuses = [call(a, keys, "third") for _ in range(10)]
    assert statuses == [200] * 10
    assert redis_commands(redis_server.port) == before


def test_failed_attempts_on_two_servers_add_up_to_one_throttle(servers):
    a, _b, c, keys = servers
    # "wrong second" is a well-formed password of "second", but not its own: each costs Argon2.
    for server in [a, c] * (MAX_FAILURES_PER_KEY // 2):
        assert call(server, keys, "wrong second") == 401
    # Four failures in all, two on each: both servers now throttle the key.
    assert call(a, keys, "wrong second") == 429
    assert call(c, keys, "wrong second") == 429
    assert call(c, keys, "second") == 429  # even the right password waits


def test_portal_log_in_failures_on_two_servers_add_up_to_one_lock(servers):
    a, _b, c, _keys = servers

    def failed_log_in(server):
        _status, headers, body = server.get("/login/")
        token = body.decode().split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
        cookie = headers["Set-Cookie"].split(";")[0]
        form = f"csrfmiddlewaretoken={token}&username=alice&password=wrong-guess"
        return fetch(
            server.port,
            "/login/",
            method="POST",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
        )[2].decode()

    assert "Too many" not in failed_log_in(a)
    assert "Too many" not in failed_log_in(c)
    # The third failure, on either server, locks the account on both.
    assert "Too many failed log-in attempts" in failed_log_in(a)
    assert "Too many failed log-in attempts" in failed_log_in(c)


def test_with_redis_down_both_servers_verify_with_argon2_and_never_fail_open(
    keys_and_env, own_redis_server
):
    keys, env, directory = keys_and_env
    env = {**env, "CACHE_URL": own_redis_server.url}
    a = gunicorn(env, directory, "a-redis-down")
    b = gunicorn(env, directory, "b-redis-down")
    try:
        for server in (a, b):  # verified with Redis up: now remembered in Redis
            assert call(server, keys, "first") == 200
        own_redis_server.stop()
        for server in (a, b):
            assert call(server, keys, "first") == 200
            assert call(server, keys, "wrong first") == 401
            assert server.get("/readyz")[0] == 503
        # Revoke the key behind the servers' backs: nothing remembered lets it through.
        revoked = manage(
            "shell", "--no-imports", "-c",
            "from keys import actions; from keys.models import ApiKey; "
            f"key = ApiKey.objects.get(identifier={keys.identifier('first')!r}); "
            "actions.revoke_key(key, actor=key.owner)",
            env=env,
        )  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr[-2000:]
        for server in (a, b):
            assert call(server, keys, "first") == 401
    finally:
        a.stop()
        b.stop()
