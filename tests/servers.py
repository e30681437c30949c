"""Real servers for the tests: redis-server, the PostgreSQL-only marker, app servers.

Tests marked `redis` run against a real redis-server that this plugin starts on a free
loopback port in a temporary directory, with no persistence, and stops at the end. Without
redis-server they are skipped loudly; with CI=true a missing server fails them instead.
Tests marked `postgres_only` run only in the PostgreSQL run (tests/with_postgres.py).
"""

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.test import override_settings

from portal.settings import caches_from_url

REPO = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(reason: str):
    """A server the test needs is missing: skip, but fail under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: required, not skipped)", pytrace=False)
    pytest.skip(f"{reason} — install it to run this test")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, *, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Poll check() until it returns truthy; fail after timeout or when proc dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if result := check():
                return result
        except Exception as error:
            last_error = error
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready after {timeout}s ({last_error!r})")


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


class RedisServer:
    """One redis-server on 127.0.0.1:<free port>, data in a temp dir, nothing saved to disk."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def options(self) -> list[str]:
        return [
            *("--bind", "127.0.0.1", "--port", str(self.port)),
            *("--dir", str(self.directory), "--daemonize", "no"),
            *("--save", "", "--appendonly", "no"),  # nothing to disk
        ]

    def start(self) -> "RedisServer":
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        for attempt in range(3):  # the probed port can be taken before redis binds it
            self.port = free_port()
            log = (self.directory / "redis.log").open("ab")
            self.proc = subprocess.Popen(
                [executable, *self.options()],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
            try:
                wait_for(client.ping, timeout=10, what="redis-server", proc=self.proc)
                return self
            except (RuntimeError, TimeoutError):
                self.stop()
                if attempt == 2:
                    raise
            finally:
                client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def start_on_same_port(self) -> "RedisServer":
        """Start again after a crash, where the app servers expect it (an empty Redis)."""
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        with (self.directory / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [executable, *self.options()], stdout=log, stderr=subprocess.STDOUT
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            wait_for(client.ping, timeout=10, what="redis-server", proc=self.proc)
        finally:
            client.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _start_redis(tmp_path_factory) -> RedisServer:
    if not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        require("redis-server is not installed")
    return RedisServer(tmp_path_factory.mktemp("redis")).start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """The shared redis-server of the run."""
    server = _start_redis(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may stop to see the portal without it."""
    server = _start_redis(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def point_cache() -> Iterator:
    """Point Django's cache at a URL, configured exactly as CACHE_URL would, for this test.

    Not through pytest-django's `settings`: this fixture is set up after the autouse cache
    clearing, so it is undone before that clears the cache (perhaps of a stopped Redis).
    """
    overrides: list[override_settings] = []

    def point(url: str) -> None:
        override = override_settings(CACHES=caches_from_url(url))
        override.enable()
        overrides.append(override)

    yield point
    for override in reversed(overrides):
        override.disable()


@pytest.fixture
def redis_cache(redis_server) -> Iterator[RedisServer]:
    """Django's cache is RedisCache on the shared, emptied redis-server for this test."""
    client = redis.Redis(port=redis_server.port)
    client.flushdb()
    client.close()
    with override_settings(CACHES=caches_from_url(redis_server.url)):
        yield redis_server


@pytest.fixture(autouse=True)
def _redis_marker(request):
    if request.node.get_closest_marker("redis"):
        request.getfixturevalue("redis_cache")


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres_only"):
        engine = django_settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            pytest.skip("PostgreSQL only: runs in `make test-postgres`")


def manage_env(**extra: str) -> dict[str, str]:
    """Environment for a manage.py/gunicorn subprocess with production-like settings."""
    # A clean environment: nothing the test process set (DJANGO_ALLOW_ASYNC_UNSAFE for the
    # browser tests, say) leaks into what is meant to be a production process.
    passed = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "CI"}
    env = {key: value for key, value in os.environ.items() if key in passed}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        SECRET_KEY="test-subprocess-" + "k" * 50,
        AUDIT_SIGNING_KEY=os.environ["AUDIT_SIGNING_KEY"],  # tests/settings.py's test key
        DEBUG="0",
        HTTPS="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- app servers in subprocesses -------------------------------------------------------------


def _database_for_servers(tmp_path_factory) -> Iterator[str]:
    """A database of its own for app servers in subprocesses, on the run's database server.

    SQLite run: a file in tmp_path. PostgreSQL run: a new database beside the test database,
    dropped afterwards. (The test database itself lives in the test's transaction.)
    """
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{tmp_path_factory.mktemp('served') / 'served.sqlite3'}"
        return
    import psycopg

    name = f"kp_served_{os.getpid()}_{free_port()}"
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server_database_url(tmp_path_factory) -> Iterator[str]:
    """A database for the app servers of one test module."""
    yield from _database_for_servers(tmp_path_factory)


@pytest.fixture
def own_server_database_url(tmp_path_factory) -> Iterator[str]:
    """A database for the app servers of this test alone."""
    yield from _database_for_servers(tmp_path_factory)


def fetch(port: int, path: str, *, method: str = "GET", headers=None, body=None):
    """One HTTP request to 127.0.0.1:port; returns (status, headers dict, body bytes)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _processes() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process, from /proc (Linux)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            yield int(entry.name), state, int(ppid), int(pgrp)


def process_children(pid: int) -> list[int]:
    return [child for child, state, ppid, _ in _processes() if ppid == pid and state != "Z"]


class AppServer:
    """A command serving the portal on 127.0.0.1:<free port>, in its own process group."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, host: str = ""):
        self.host = host  # the Host header to send, one of ALLOWED_HOSTS
        self.port = free_port()
        self.command = command
        self.env = {**env, "BIND": f"127.0.0.1:{self.port}"}
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "AppServer":
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one process group: stopped together
            )
        try:
            wait_for(
                lambda: self.get("/healthz")[0] == 200,
                timeout=timeout,
                what=f"{self.command[0]} on port {self.port}",
                proc=self.proc,
            )
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise AssertionError(f"{error}\n{self.output()[-3000:]}") from None
        return self

    def get(self, path: str, **headers: str):
        return fetch(
            self.port, path, headers={"Host": self.host, **headers} if self.host else headers
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        group = self.proc.pid
        try:
            os.killpg(group, signal.SIGTERM)
            self.proc.wait(timeout=30)
            # gunicorn's master and workers may outlive make by a moment.
            wait_for(lambda: not _group_alive(group), timeout=30, what="process group exit")
        except (subprocess.TimeoutExpired, TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def _group_alive(group: int) -> bool:
    return any(pgrp == group and state != "Z" for _, state, _, pgrp in _processes())


# --- keys for app servers in subprocesses ------------------------------------------------

# Run by `manage.py shell -c` in a server's database: alice and three keys ("first",
# "second", "third", each with a "wrong …" twin), written to the file named, mode 600.
KEYS_SETUP = """
import json, pathlib
from django.contrib.auth.models import Group
from keys import actions, tokens
from keys.models import Api, latest_expiry_for, local_date
from portal.models import User
alice = User.objects.create_user("alice", password="alice-shared-pw")
alice.groups.add(Group.objects.get(name="staff"))
keys = {}
for name in ("first", "second", "third"):
    key, password = actions.create_key(
        owner=alice, name=name, expires_on=latest_expiry_for(local_date()),
        networks=["127.0.0.1"], apis=list(Api.objects.filter(slug="risks")),
    )
    keys[name] = [key.identifier, password]
    # Well-formed and naming the key, but not its password: each try costs Argon2.
    keys["wrong " + name] = [key.identifier, tokens.generate_password(key.identifier)]
path = pathlib.Path(%r)
path.touch(mode=0o600)
path.write_text(json.dumps(keys))
"""


class Keys:
    """The keys KEYS_SETUP made, by name; assertions show names, never passwords."""

    def __init__(self, credentials: dict[str, list[str]]):
        self._credentials = credentials

    def header(self, name: str) -> dict[str, str]:
        identifier, password = self._credentials[name]
        token = base64.b64encode(f"{identifier}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def identifier(self, name: str) -> str:
        return self._credentials[name][0]


def call(server: AppServer, keys: Keys, name: str) -> int:
    """Status of GET /api/v1/risks with the credentials `name`."""
    return server.get("/api/v1/risks", **keys.header(name))[0]


def gunicorn(env, directory, name, **overrides) -> AppServer:
    """gunicorn serving the portal with `env` and `overrides`, logging to directory/name.log."""
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "portal.wsgi"]
    return AppServer(command, {**env, **overrides}, directory / f"{name}.log").start()
