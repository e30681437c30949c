"""Production serving: the documented environment passes `check --deploy` without a warning, and
`make serve` serves the portal through gunicorn with hashed static files from WhiteNoise."""

import re
import secrets
import shutil
from pathlib import Path

import pytest

from tests.servers import (
    REPO,
    AppServer,
    fetch,
    manage,
    manage_env,
    process_children,
    require,
)

GUIDE = REPO / "docs" / "deploy.md"
HOST = "keys.example.com"


def documented_environment() -> dict[str, str]:
    """The variables docs/deploy.md writes to /etc/key-portal/env, secrets filled in."""
    block = re.search(r"cat > /etc/key-portal/env <<EOF\n(.*?)\nEOF\n", GUIDE.read_text(), re.S)
    assert block, "docs/deploy.md no longer writes /etc/key-portal/env"
    env = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        if value.startswith("$("):  # generated at install time
            value = secrets.token_urlsafe(50)
        env[name] = re.sub(r"\$\w+", secrets.token_hex(8), value)
    return env


def production_env(**overrides: str) -> dict[str, str]:
    env = manage_env(**documented_environment())
    env.pop("HTTPS", None)  # production: from the documented file alone
    env.update(documented_environment())
    # The key file and checkpoint directory exist on the real host: here the test key from
    # manage_env() stands in, and checkpoints go to the log only.
    del env["AUDIT_SIGNING_KEY_FILE"], env["AUDIT_CHECKPOINT_DIR"]
    env.update(overrides)
    return env


def test_the_documented_environment_sets_what_production_needs():
    env = documented_environment()
    for name in (
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "CACHE_URL",
        "AUDIT_SIGNING_KEY_FILE",
    ):
        assert env.get(name), name
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["CACHE_URL"].startswith("redis://")
    assert "DEBUG" not in env


def test_check_deploy_passes_with_the_documented_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_would_catch_a_weakened_setting():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(HTTPS="0"))
    assert result.returncode != 0
    assert "security.W012" in result.stderr  # SESSION_COOKIE_SECURE


def test_production_needs_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_production_keeps_database_connections_and_serves_hashed_static_files():
    code = (
        "from django.conf import settings; print(settings.DEBUG, "
        "settings.DATABASES['default']['CONN_MAX_AGE'], "
        "settings.DATABASES['default']['CONN_HEALTH_CHECKS'], "
        "settings.STORAGES['staticfiles']['BACKEND'])"
    )
    result = manage("shell", "--no-imports", "-c", code, env=production_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "60",
        "True",
        "whitenoise.storage.CompressedManifestStaticFilesStorage",
    ]


@pytest.fixture(scope="module")
def make_serve(tmp_path_factory, server_database_url):
    """`make serve` with the documented environment, its own database and static root.

    One server for the module: its tests only read from it (the log test reads its output)."""
    if shutil.which("make") is None:
        require("make is not installed")
    directory = tmp_path_factory.mktemp("serve")
    env = production_env(
        DATABASE_URL=server_database_url,
        CACHE_URL="locmem://",
        STATIC_ROOT=str(directory / "static"),
        WORKERS="2",
    )
    # -o install: the test run's venv is installed already; do not touch it.
    server = AppServer(["make", "-o", "install", "serve"], env, directory / "serve.log", HOST)
    server.start(timeout=120)
    yield server
    server.stop()


def https(port: int, path: str, **headers: str):
    return fetch(port, path, headers={"Host": HOST, "X-Forwarded-Proto": "https", **headers})


def test_make_serve_serves_the_portal_with_hashed_static_files(make_serve):
    port = make_serve.port

    status, headers, body = https(port, "/login/")
    assert status == 200
    html = body.decode()
    assert "Log in" in html
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "Secure" in headers["Set-Cookie"]  # the CSRF cookie

    stylesheet = re.search(r'href="(/static/portal\.[0-9a-f]{12}\.css)"', html).group(1)
    status, headers, body = https(port, stylesheet, **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "immutable" in headers["Cache-Control"]
    assert headers.get("Content-Encoding") == "gzip"
    htmx = re.search(r'src="(/static/django_htmx/htmx-2\.min\.[0-9a-f]{12}\.js)"', html)
    assert htmx and https(port, htmx.group(1))[0] == 200


def test_make_serve_runs_the_workers_asked_for_with_debug_off(make_serve):
    # make -> gunicorn master -> WORKERS workers
    masters = [
        pid
        for child in process_children(make_serve.proc.pid)
        for pid in [child, *process_children(child)]
        if len(process_children(pid)) == 2
    ]
    assert masters, "no gunicorn master with 2 workers"
    status, _, body = https(make_serve.port, "/no-such-page/")
    assert status == 404
    assert b"URLconf" not in body  # the DEBUG 404 page lists the URL patterns


def test_make_serve_redirects_plain_http_but_answers_probes(make_serve):
    status, headers, _ = fetch(make_serve.port, "/login/", headers={"Host": HOST})
    assert status == 301
    assert headers["Location"] == f"https://{HOST}/login/"
    assert fetch(make_serve.port, "/healthz", headers={"Host": HOST})[0] == 200
    assert fetch(make_serve.port, "/readyz", headers={"Host": HOST})[0] == 200


def test_make_serve_refuses_unknown_host_names(make_serve):
    assert https(make_serve.port, "/login/", Host="evil.example")[0] == 400


def test_the_guide_names_every_command_it_ran():
    # docs/verify_guide.py runs every sh block but the "# with systemd" ones.
    text = GUIDE.read_text()
    assert "docs/verify_guide.py" in text
    assert Path(REPO / "docs" / "verify_guide.py").exists()


def test_an_encoded_newline_in_a_path_cannot_forge_an_access_log_line(make_serve):
    forged = "127.0.0.1 [01/Jan/2026:00:00:00 +0000] GET /admin/ 200"
    path = "/api/v1/whoami%0D%0A" + forged.replace(" ", "%20")
    assert https(make_serve.port, path)[0] == 404
    lines = make_serve.output().splitlines()
    assert not any(line.startswith(forged) for line in lines)
    assert any("whoami\\r\\n127.0.0.1" in line for line in lines)
