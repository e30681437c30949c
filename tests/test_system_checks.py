"""The settings' system checks: what `manage.py check` (and runserver, migrate, gunicorn) say.

A proxy set-up that lets a client pick its own address, or an untested django-ipware, stops
start-up with an Error saying what to fix; `check --deploy` warns when production counts its
throttles in each process's own memory.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from portal.env import caches_from_url
from tests.servers import REPO, free_port, manage, manage_env

LOCAL_MEMORY = caches_from_url("locmem://")
REDIS = caches_from_url("redis://127.0.0.1:6379/0")  # never connected to: the check reads the URL


def portal_messages(*, deploy: bool = False) -> list[str]:
    """The portal's own check messages, as `manage.py check` prints them."""
    found = run_checks(include_deployment_checks=deploy)
    return [str(message) for message in found if message.id and message.id.startswith("portal.")]


# --- Trusted proxies and the proxy header -----------------------------------------------------


@pytest.mark.parametrize(
    "proxies",
    [
        [],
        ["10.0.0.5", "2001:db8::1"],
        ["10.0.0.0/8", "2001:db8::/32", "::ffff:10.0.0.0/104"],  # the widest allowed, exactly
    ],
)
def test_a_sound_proxy_set_up_passes_the_checks(proxies):
    with override_settings(KEYS_TRUSTED_PROXIES=proxies, KEYS_PROXY_HEADER="HTTP_X_REAL_IP"):
        assert portal_messages() == []


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.0/33", "127.0.0.1/8", "10.0.0.5,"])
def test_a_trusted_proxy_that_is_no_address_or_range_is_an_error(entry):
    with override_settings(KEYS_TRUSTED_PROXIES=["10.0.0.5", entry]):
        (message,) = portal_messages()
    assert "(portal.E001)" in message
    assert (
        f"KEYS_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR range without host bits."
        in message
    )


@pytest.mark.parametrize(
    ("entry", "widest"),
    [
        ("0.0.0.0/0", 8),
        ("10.0.0.0/7", 8),  # one bit wider than allowed
        ("::/0", 32),
        ("2001:db8::/31", 32),
        ("::ffff:0.0.0.0/96", 8),  # IPv4-mapped: judged as the IPv4 range it is
        ("::ffff:10.0.0.0/103", 8),
    ],
)
def test_a_trusted_proxy_range_wider_than_a_proxy_is_an_error(entry, widest):
    with override_settings(KEYS_TRUSTED_PROXIES=[entry]):
        (message,) = portal_messages()
    assert "(portal.E002)" in message
    assert (
        f"KEYS_TRUSTED_PROXIES: {entry!r} trusts too much of the internet; list your proxies' "
        f"addresses (at most a /{widest})." in message
    )


@pytest.mark.parametrize(
    "header", ["X-Forwarded-For", "HTTP_X_FORWARDED_FOR\n", "http_x_forwarded_for", "REMOTE_ADDR"]
)
def test_a_proxy_header_not_in_request_meta_form_is_an_error(header):
    with override_settings(KEYS_PROXY_HEADER=header):
        (message,) = portal_messages()
    assert "(portal.E003)" in message
    assert f"KEYS_PROXY_HEADER: {header!r} is not a request.META name; write the header" in message
    assert "e.g. HTTP_X_FORWARDED_FOR for X-Forwarded-For." in message


def test_every_bad_proxy_setting_is_reported_at_once():
    with override_settings(KEYS_TRUSTED_PROXIES=["localhost", "::/0"], KEYS_PROXY_HEADER="XFF"):
        found = run_checks()
    assert [message.id for message in found] == ["portal.E001", "portal.E002", "portal.E003"]


def test_manage_py_check_stops_on_a_dangerous_proxy_and_says_what_to_fix():
    with (
        override_settings(KEYS_TRUSTED_PROXIES=["0.0.0.0/0"]),
        pytest.raises(SystemCheckError) as stopped,
    ):
        call_command("check")
    assert "(portal.E002) KEYS_TRUSTED_PROXIES: '0.0.0.0/0' trusts too much" in str(stopped.value)


# --- django-ipware ------------------------------------------------------------------------------


def test_the_installed_django_ipware_is_the_tested_major_version():
    assert portal_messages() == []


def test_a_django_ipware_major_version_other_than_the_tested_one_is_an_error():
    with override_settings(IPWARE_TESTED_MAJOR=9):
        (message,) = portal_messages()
    assert "(portal.E004) django-ipware 8." in message
    assert (
        "is installed; Key Portal's client IP rules are tested with 9.x. "
        "Install django-ipware 9.x (constraints.txt)." in message
    )


# --- The app server (gunicorn runs no system checks) ------------------------------------------


def gunicorn(*options: str, **env: str) -> subprocess.CompletedProcess:
    """Run gunicorn on portal.wsgi as docs/deploy.md does, with production-like settings."""
    command = [str(Path(sys.executable).parent / "gunicorn"), "--config", "gunicorn.conf.py"]
    environment = manage_env(BIND=f"127.0.0.1:{free_port()}", WORKERS="1", **env)
    return subprocess.run(
        [*command, *options, "portal.wsgi"],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_app_server_refuses_to_start_on_a_dangerous_proxy_set_up():
    # Not stopped by the test: gunicorn exits on its own when its worker cannot load the app.
    started = gunicorn(KEYS_TRUSTED_PROXIES="10.0.0.5,::/0", KEYS_PROXY_HEADER="X-Real-IP")
    assert started.returncode != 0
    output = started.stdout + started.stderr
    assert "ImproperlyConfigured: KEYS_TRUSTED_PROXIES: '::/0' trusts too much" in output
    assert "KEYS_PROXY_HEADER: 'X-Real-IP' is not a request.META name" in output


def test_the_app_server_loads_with_a_sound_proxy_set_up():
    # --check-config loads the application as a worker would, then exits instead of serving.
    loaded = gunicorn("--check-config", KEYS_TRUSTED_PROXIES="10.0.0.5,2001:db8::1")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr


# --- check --deploy: a process-local cache in production -------------------------------------


def test_check_deploy_warns_that_a_local_memory_cache_counts_throttles_per_process():
    with override_settings(DEBUG=False, CACHES=LOCAL_MEMORY):
        (message,) = portal_messages(deploy=True)
    assert "(portal.W001) The default cache is process-local (LocMemCache)" in message
    assert "each counts its own API and log-in throttles" in message
    assert "HINT: Set CACHE_URL=redis://… (docs/deploy.md)" in message


def test_check_deploy_is_silent_about_a_shared_cache():
    with override_settings(DEBUG=False, CACHES=REDIS):
        assert portal_messages(deploy=True) == []


def test_a_local_memory_cache_is_fine_while_debugging():
    with override_settings(DEBUG=True, CACHES=LOCAL_MEMORY):
        assert portal_messages(deploy=True) == []


def test_the_cache_warning_is_for_check_deploy_only():
    with override_settings(DEBUG=False, CACHES=LOCAL_MEMORY):
        assert portal_messages() == []


def test_check_deploy_with_a_local_memory_cache_warns_and_fails_at_warning_level():
    # Production otherwise as docs/deploy.md sets it: HTTPS, HSTS preload.
    env = manage_env(CACHE_URL="locmem://", HTTPS="1", SECURE_HSTS_PRELOAD="1")
    warned = manage("check", "--deploy", env=env)
    assert warned.returncode == 0, warned.stderr  # a warning: `make serve` still starts
    assert "(portal.W001) The default cache is process-local" in warned.stderr
    assert "System check identified 1 issue (0 silenced)." in warned.stderr
    stopped = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert stopped.returncode != 0
    assert "(portal.W001)" in stopped.stderr
