"""Hardened defaults: CSP without inline code, no framing, HTTPS-only cookies and HSTS when
served over HTTPS, and an idle session timeout."""

import datetime
import json
import re
from pathlib import Path

import pytest
import time_machine

from tests.servers import manage, manage_env

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def csp_directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", ["/login/", "/keys/", "/keys/add/", "/profile/"])
def test_every_page_has_a_strict_content_security_policy(alice, client, path):
    if path != "/login/":
        client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 200
    csp = csp_directives(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    policy = response["Content-Security-Policy"]
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_htmx_is_configured_to_need_neither_eval_nor_inline_styles(alice, login):
    html = login(alice).get("/keys/add/").content.decode()
    match = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", html)
    config = json.loads(match.group(1))
    assert config["allowEval"] is False
    assert config["includeIndicatorStyles"] is False
    assert config["allowScriptTags"] is False


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=str)
def test_no_template_has_inline_script_style_or_event_handlers(template):
    html = template.read_text()
    # A JSON data block (allauth's passkey pages hand their options to static JS this way) is
    # never run, so the CSP's script-src has nothing to allow; any other inline <script> would be.
    code = r"<script(?![^>]*\bsrc=)(?![^>]*\btype=\"application/json\")[^>]*>"
    assert not re.search(code, html), "inline <script>"
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html), "style attribute"
    assert not re.search(r"\son[a-z]+=", html), "event handler attribute"
    assert not re.search(r"\shx-on", html), "hx-on needs eval"
    assert "javascript:" not in html


def test_over_https_responses_carry_the_production_hsts(client, db, settings):
    # The values a production process computes from the environment, not ones set here.
    production = production_settings(
        "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS=""
    )
    settings.SECURE_HSTS_SECONDS = production["SECURE_HSTS_SECONDS"]
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = production["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    response = client.get("/login/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def production_settings(*names: str, **env: str) -> dict:
    """The named settings as a production process (DEBUG off, HTTPS default) sees them."""
    pairs = ", ".join(f"{name!r}: settings.{name}" for name in names)
    code = f"import json; from django.conf import settings; print(json.dumps({{{pairs}}}))"
    result = manage("shell", "--no-imports", "-c", code, env=manage_env(**env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_defaults_to_https_only_cookies_hsts_and_redirect():
    assert production_settings(
        "DEBUG",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        HTTPS="",
    ) == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    }


def test_plain_http_mode_turns_the_https_only_settings_off():
    assert production_settings(
        "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", HTTPS="0"
    ) == {"SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False, "SECURE_HSTS_SECONDS": 0}


def test_a_session_idle_for_more_than_30_minutes_ends(alice, client):
    start = datetime.datetime(2030, 5, 6, 9, 0, tzinfo=datetime.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        client.post("/login/", {"username": "alice", "password": "alice-portal-pw"})
        for _ in range(3):  # busy for 87 minutes: each request renews the session
            traveller.shift(datetime.timedelta(minutes=29))
            assert client.get("/keys/").status_code == 200
        traveller.shift(datetime.timedelta(minutes=31))
        response = client.get("/keys/")
        assert response.status_code == 302
        assert response.url.startswith("/login/")


def test_the_session_cookie_is_http_only_and_same_site(alice, client):
    client.post("/login/", {"username": "alice", "password": "alice-portal-pw"})
    cookie = client.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 30 * 60


@pytest.mark.parametrize(
    "path",
    ["/static/portal.css", "/api/v1/whoami", "/api/v1/no-such-api/", "/login/"],
    ids=["static file", "api 401", "api 404", "page"],
)
def test_every_response_refuses_framing_and_sniffing(client, db, path):
    response = client.get(path)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/keys/", "/keys/{identifier}/", "/all-keys/", "/audit/"])
def test_signed_in_pages_showing_key_metadata_are_never_stored(carol, login, make_key, path):
    key, _ = make_key(carol)
    response = login(carol).get(path.format(identifier=key.identifier))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_an_htmx_request_from_an_ended_session_loads_the_log_in_page_and_comes_back(client, db):
    response = client.post(
        "/keys/add/ip-row/",
        {"allowed_ips": [""]},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/keys/add/?from=menu",
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/login/?next=%2Fkeys%2Fadd%2F%3Ffrom%3Dmenu"


def test_an_htmx_redirect_never_sends_people_to_another_site(client, db):
    response = client.post(
        "/keys/add/ip-row/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="https://evil.example/x"
    )
    assert response["HX-Redirect"] == "/login/?next=%2F"
