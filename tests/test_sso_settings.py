"""Single sign-on settings from the environment, and the system check that refuses nonsense.

The parsers fail loudly at start-up (ImproperlyConfigured); the check (portal.checks) stops
`manage.py check`, runserver, migrate and gunicorn on settings that cannot work or would lock
everyone out, and warns about the ones that do nothing.
"""

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from portal.env import env_map, env_words, oidc_providers
from tests.servers import manage, manage_env

SSO = {
    "OIDC_ISSUER": "https://login.example.com/realms/staff",
    "OIDC_CLIENT_ID": "key-portal",
    "OIDC_CLIENT_SECRET": "test-only-secret",
}


def sso_messages() -> list[str]:
    found = run_checks(include_deployment_checks=True)
    return [str(m) for m in found if m.id and m.id.startswith("portal.") and m.id != "portal.W001"]


# --- parsers ---------------------------------------------------------------------------------


def test_the_role_map_reads_claim_values_and_roles(monkeypatch):
    monkeypatch.setenv("OIDC_ROLE_MAP", " key-admins=admin, key-auditors = auditor ,")
    assert env_map("OIDC_ROLE_MAP") == {"key-admins": "admin", "key-auditors": "auditor"}


@pytest.mark.parametrize("value", ["key-admins", "key-admins=", "=admin", "a=admin,a=auditor"])
def test_a_role_map_that_is_not_name_value_pairs_stops_start_up(monkeypatch, value):
    monkeypatch.setenv("OIDC_ROLE_MAP", value)
    with pytest.raises(ImproperlyConfigured, match="OIDC_ROLE_MAP"):
        env_map("OIDC_ROLE_MAP")


def test_scopes_may_be_written_with_spaces_or_commas(monkeypatch):
    monkeypatch.setenv("OIDC_SCOPES", "openid,profile email  groups")
    assert env_words("OIDC_SCOPES") == ["openid", "profile", "email", "groups"]


def test_no_issuer_configures_no_provider():
    assert oidc_providers(issuer="", client_id="x", secret="y", label="SSO", scopes=[]) == {}


def test_an_issuer_configures_one_openid_connect_app_from_the_environment():
    providers = oidc_providers(
        issuer=SSO["OIDC_ISSUER"],
        client_id="key-portal",
        secret="test-only-secret",
        label="Contoso",
        scopes=["openid", "email"],
    )
    (app,) = providers["openid_connect"]["APPS"]
    assert app["name"] == "Contoso"
    assert app["client_id"] == "key-portal"
    assert app["settings"] == {"server_url": SSO["OIDC_ISSUER"], "scope": ["openid", "email"]}
    assert providers["openid_connect"]["OAUTH_PKCE_ENABLED"] is True


def test_the_settings_module_reads_every_sso_setting_from_the_environment():
    env = manage_env(
        **SSO,
        OIDC_BUTTON_LABEL="Contoso",
        OIDC_ROLE_CLAIM="roles",
        OIDC_ROLE_MAP="KeyAdmins=admin",
        SSO_ONLY="1",
        SSO_BREAK_GLASS_ACCOUNTS="root, breakglass",
    )
    names = [
        "OIDC_ISSUER",
        "OIDC_CLIENT_ID",
        "OIDC_BUTTON_LABEL",
        "OIDC_SCOPES",
        "OIDC_ROLE_CLAIM",
        "OIDC_ROLE_MAP",
        "SSO_ONLY",
        "SSO_BREAK_GLASS_ACCOUNTS",
    ]
    script = "from django.conf import settings as s; " + "; ".join(
        f"print({name!r}, repr(s.{name}))" for name in names
    )
    done = manage("shell", "-v", "0", "-c", script, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"OIDC_ISSUER {SSO['OIDC_ISSUER']!r}",
        "OIDC_CLIENT_ID 'key-portal'",
        "OIDC_BUTTON_LABEL 'Contoso'",
        "OIDC_SCOPES ['openid', 'profile', 'email']",
        "OIDC_ROLE_CLAIM 'roles'",
        "OIDC_ROLE_MAP {'KeyAdmins': 'admin'}",
        "SSO_ONLY True",
        "SSO_BREAK_GLASS_ACCOUNTS ['root', 'breakglass']",
    ]


def test_without_sso_settings_single_sign_on_is_off_with_its_defaults():
    done = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings as s; print(s.OIDC_ISSUER == '', "
        "s.OIDC_BUTTON_LABEL, s.OIDC_ROLE_CLAIM, s.SSO_ONLY, s.SOCIALACCOUNT_PROVIDERS)",
        env=manage_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True Single sign-on groups False {}"


# --- the system check ------------------------------------------------------------------------


def test_sound_sso_settings_pass_the_check():
    with override_settings(
        **SSO,
        OIDC_ROLE_MAP={"key-admins": "admin"},
        SSO_ONLY=True,
        SSO_BREAK_GLASS_ACCOUNTS=["root"],
    ):
        assert sso_messages() == []


def test_sso_only_without_an_issuer_is_an_error():
    with override_settings(SSO_ONLY=True, SSO_BREAK_GLASS_ACCOUNTS=["root"]):
        (message,) = sso_messages()
    assert "(portal.E010) SSO_ONLY is on but OIDC_ISSUER is not set: nobody could sign in." in (
        message
    )


@pytest.mark.parametrize("issuer", ["login.example.com", "ftp://login.example.com", "https://"])
def test_an_issuer_that_is_no_url_is_an_error(issuer):
    with override_settings(**{**SSO, "OIDC_ISSUER": issuer}):
        (message,) = sso_messages()
    assert f"(portal.E011) OIDC_ISSUER: {issuer!r} is not the provider's issuer URL" in message


def test_an_issuer_without_client_credentials_is_an_error():
    with override_settings(OIDC_ISSUER=SSO["OIDC_ISSUER"], OIDC_CLIENT_ID="key-portal"):
        (message,) = sso_messages()
    assert "(portal.E012) OIDC_ISSUER is set but OIDC_CLIENT_SECRET not." in message


def test_a_role_map_naming_no_role_is_an_error():
    with override_settings(**SSO, OIDC_ROLE_MAP={"key-admins": "administrator"}):
        (message,) = sso_messages()
    assert (
        "(portal.E013) OIDC_ROLE_MAP: key-admins=administrator names no role; the roles are "
        "staff, admin, auditor." in message
    )


def test_a_plain_http_issuer_elsewhere_than_this_host_is_a_warning():
    with override_settings(**{**SSO, "OIDC_ISSUER": "http://login.example.com"}):
        (message,) = sso_messages()
    assert "(portal.W010)" in message
    with override_settings(**{**SSO, "OIDC_ISSUER": "http://127.0.0.1:8080"}):
        assert sso_messages() == []


def test_client_credentials_without_an_issuer_are_a_warning_that_sso_is_off():
    with override_settings(OIDC_CLIENT_ID="key-portal"):
        (message,) = sso_messages()
    assert "(portal.W011)" in message


def test_break_glass_accounts_without_sso_only_are_a_warning():
    with override_settings(**SSO, SSO_BREAK_GLASS_ACCOUNTS=["root"]):
        (message,) = sso_messages()
    assert "(portal.W012)" in message


def test_sso_only_without_break_glass_accounts_is_a_warning():
    with override_settings(**SSO, SSO_ONLY=True):
        (message,) = sso_messages()
    assert "(portal.W013)" in message
    assert "while the provider is down, nobody can sign in" in message


def test_the_app_server_refuses_to_start_with_sso_only_and_no_issuer():
    done = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "import portal.wsgi",
        env=manage_env(SSO_ONLY="1", SSO_BREAK_GLASS_ACCOUNTS="root"),
    )
    assert done.returncode != 0
    assert "SSO_ONLY is on but OIDC_ISSUER is not set" in done.stderr
