"""Nothing counted is lost when Redis or PostgreSQL falters (keys.api.usage).

Real gunicorn servers (two workers each, the background flusher on) with a real redis-server
as their cache, on their own database. Every call that got 200 must end up in the per-day
counts, and every refused call in the refusal records, through a Redis kill and restart, a
frozen Redis and (PostgreSQL run) a PostgreSQL stop. A worker killed with SIGKILL may lose
what it counted in its last second; that is not tested here, it is the stated bound.
"""

import contextlib
import json
import signal
import time

import pytest

from tests.servers import KEYS_SETUP, AppServer, Keys, call, gunicorn, manage, manage_env, wait_for

pytestmark = pytest.mark.redis

COUNTS = (
    "import json; from keys.models import AuditEvent, KeyUsageDay; "
    "denied = AuditEvent.objects.filter(action='use_denied').values_list('details', flat=True); "
    "print(json.dumps({'uses': sum(KeyUsageDay.objects.values_list('uses', flat=True)), "
    "'refused': sum(d['count'] for d in denied)}))"
)


def stored(env) -> dict[str, int]:
    result = manage("shell", "--no-imports", "-c", COUNTS, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def eventually_stored(env, expected: dict[str, int]) -> dict[str, int]:
    """The stored counts once they reach `expected` (the flushers run every second)."""
    seen = {}

    def reached() -> bool:
        seen.update(stored(env))
        return seen == expected

    with contextlib.suppress(TimeoutError):  # the assertion shows what was stored instead
        wait_for(reached, timeout=20, what=f"stored counts {expected}")
    return seen


def set_up(tmp_path, database_url, cache_url) -> tuple[Keys, dict]:
    env = manage_env(
        DATABASE_URL=database_url,
        CACHE_URL=cache_url,
        WORKERS="2",
        KEYS_REFUSAL_WINDOW_SECONDS="2",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    assert manage("migrate", "--noinput", env=env).returncode == 0
    secrets_file = tmp_path / "keys.json"  # passwords only in a file of mode 600
    created = manage("shell", "--no-imports", "-c", KEYS_SETUP % str(secrets_file), env=env)
    assert created.returncode == 0, created.stderr[-2000:]
    return Keys(json.loads(secrets_file.read_text())), env


def calls(server: AppServer, keys: Keys, n: int, *, wrong: bool = False) -> list[int]:
    """n calls with key "first": its password, or a well-formed wrong one."""
    name = "wrong first" if wrong else "first"
    return [call(server, keys, name) for _ in range(n)]


def test_no_use_or_refusal_is_lost_when_redis_is_killed_and_restarted(
    tmp_path, own_server_database_url, own_redis_server
):
    keys, env = set_up(tmp_path, own_server_database_url, own_redis_server.url)
    server = gunicorn(env, tmp_path, "redis-killed")
    try:
        statuses = calls(server, keys, 40)
        refused = calls(server, keys, 3, wrong=True)
        own_redis_server.proc.send_signal(signal.SIGKILL)
        own_redis_server.proc.wait()
        statuses += calls(server, keys, 40)
        refused += calls(server, keys, 3, wrong=True)
        own_redis_server.start_on_same_port()
        statuses += calls(server, keys, 40)
    finally:
        server.stop()
    assert statuses.count(200) == 120 and refused == [401] * 6
    assert eventually_stored(env, {"uses": 120, "refused": 6}) == {"uses": 120, "refused": 6}


def test_no_use_is_lost_while_redis_hangs(tmp_path, own_server_database_url, own_redis_server):
    keys, env = set_up(tmp_path, own_server_database_url, own_redis_server.url)
    server = gunicorn(env, tmp_path, "redis-frozen")
    try:
        statuses = calls(server, keys, 20)
        own_redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            statuses += calls(server, keys, 5)
            ready = server.get("/readyz")[0]
        finally:
            own_redis_server.proc.send_signal(signal.SIGCONT)
        statuses += calls(server, keys, 20)
    finally:
        server.stop()
    assert ready == 503  # a hung cache is not ready
    assert statuses.count(200) == len(statuses) == 45
    assert eventually_stored(env, {"uses": 45, "refused": 0}) == {"uses": 45, "refused": 0}


def test_refusals_reach_the_record_with_their_true_count_without_another_call(
    tmp_path, own_server_database_url, own_redis_server
):
    keys, env = set_up(tmp_path, own_server_database_url, own_redis_server.url)
    server = gunicorn(env, tmp_path, "refusals")
    try:
        refused = calls(server, keys, 15, wrong=True)
        # No further call: the flushers record the rest when their window (2 s) ends.
        assert eventually_stored(env, {"uses": 0, "refused": 15}) == {"uses": 0, "refused": 15}
    finally:
        server.stop()
    assert refused == [401] * 15


@pytest.fixture
def own_postgresql():
    from tests.with_postgres import Cluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        from tests.servers import require

        require("the PostgreSQL server binaries are not installed")
    cluster = Cluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def test_no_use_is_lost_when_postgresql_stops_and_comes_back(
    tmp_path, own_postgresql, own_redis_server
):
    keys, env = set_up(tmp_path, own_postgresql.url, own_redis_server.url)
    server = gunicorn(env, tmp_path, "postgresql-stopped", KEYS_USAGE_FLUSH_SECONDS="3")
    try:
        statuses = calls(server, keys, 30)  # counted; the flusher has not run yet
        own_postgresql.stop()
        statuses += calls(server, keys, 5)  # 503: no call passes unchecked
        time.sleep(4)  # a flush fails meanwhile and keeps its counts
        own_postgresql.restart()
        wait_for(lambda: server.get("/readyz")[0] == 200, timeout=30, what="ready again")
        statuses += calls(server, keys, 30)
    finally:
        server.stop()
    assert statuses.count(503) == 5
    served = statuses.count(200)
    assert served == 60
    assert eventually_stored(env, {"uses": served, "refused": 0}) == {"uses": 60, "refused": 0}


def test_a_postgresql_restart_between_calls_fails_no_call(
    tmp_path, own_postgresql, own_redis_server
):
    # The key read checks its own connection (no SELECT 1 first): a connection the restart
    # cut is found dead by the read itself, which reconnects and reads again.
    keys, env = set_up(tmp_path, own_postgresql.url, own_redis_server.url)
    server = gunicorn(env, tmp_path, "postgresql-restarted", DB_CONN_MAX_AGE="600")
    try:
        before = calls(server, keys, 20)  # both workers now hold a connection
        own_postgresql.stop()
        own_postgresql.restart()
        after = calls(server, keys, 20)
    finally:
        server.stop()
    assert before == after == [200] * 20
