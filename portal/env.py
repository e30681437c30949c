"""Settings from the environment: parsers that fail loudly, and the files settings read.

Imported by portal/settings.py, so nothing here may import Django models or read settings:
every function takes what it needs as arguments.
"""

import base64
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

from django.core.exceptions import ImproperlyConfigured


@overload
def env(name: str) -> str | None: ...
@overload
def env(name: str, default: str) -> str: ...
def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_positive_int(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be a positive integer, not {value!r}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_choices(name: str, default: str, choices: tuple[str, ...]) -> frozenset[str]:
    """A comma-separated set of names out of `choices`; unset: `default`; set but empty: none."""
    names = env_list(name, default)
    unknown = sorted(set(names) - set(choices))
    if unknown:
        raise ImproperlyConfigured(
            f"{name} names {', '.join(unknown)}: it takes {', '.join(choices)}, comma-separated"
        )
    return frozenset(names)


def _kept_in_file(path: Path, make: Callable[[], str]) -> str:
    """Debug only: a random secret kept in an untracked file, so it survives a reload."""
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def secret_key(*, debug: bool, dev_key_file: Path) -> str:
    """SECRET_KEY from the environment; required unless debugging (sessions survive a reload)."""
    if key := env("SECRET_KEY"):
        return key
    if not debug:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. On your own machine, run the command "
            "with DEBUG=1 as `make run` does (DEBUG=1 .venv/bin/python manage.py ...)."
        )
    from django.core.management.utils import get_random_secret_key

    return _kept_in_file(dev_key_file, get_random_secret_key)


def audit_signing_key(*, debug: bool, dev_key_file: Path) -> str:
    """The Ed25519 private key that signs the audit history, as text (keys.audit.signing parses it).

    From AUDIT_SIGNING_KEY_FILE (a PEM file) or AUDIT_SIGNING_KEY (PEM, or the base64 of the
    32-byte seed); debug only, a random seed kept in dev_key_file so the dev history stays
    verifiable.
    """
    path, text = env("AUDIT_SIGNING_KEY_FILE"), env("AUDIT_SIGNING_KEY")
    if path and text:
        raise ImproperlyConfigured("Set AUDIT_SIGNING_KEY_FILE or AUDIT_SIGNING_KEY, not both.")
    if path:
        try:
            return Path(path).read_text()
        except OSError as error:
            raise ImproperlyConfigured(
                f"AUDIT_SIGNING_KEY_FILE: cannot read {path}: {error.strerror}"
            ) from None
    if text:
        return text
    if not debug:
        raise ImproperlyConfigured(
            "AUDIT_SIGNING_KEY_FILE is required when DEBUG is off: the path of an Ed25519 "
            "private key (openssl genpkey -algorithm ed25519 -out FILE) that signs the audit "
            "history; see docs/deploy.md."
        )
    return _kept_in_file(dev_key_file, lambda: base64.b64encode(os.urandom(32)).decode())


def optional_secret(name: str, *, min_length: int = 0) -> str:
    """A secret from NAME_FILE (a file holding it) or NAME, or "" when neither is set.

    Refuses both at once, an unreadable file, and a secret shorter than `min_length`: a short
    shared token is a guessable one.
    """
    path, text = env(f"{name}_FILE"), env(name)
    if path and text:
        raise ImproperlyConfigured(f"Set {name}_FILE or {name}, not both.")
    if path:
        try:
            text = Path(path).read_text().strip()
        except OSError as error:
            raise ImproperlyConfigured(
                f"{name}_FILE: cannot read {path}: {error.strerror}"
            ) from None
    text = text or ""
    if text and len(text) < min_length:
        raise ImproperlyConfigured(
            f'{name} must be at least {min_length} characters (python3 -c "import secrets; '
            f'print(secrets.token_urlsafe(32))" makes one).'
        )
    return text


def caches_from_url(url: str) -> dict[str, dict[str, Any]]:
    """Cache: local memory by default (one process); redis://… for several processes."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Short timeouts: with Redis down, a request falls back (API: Argon2 without the
        # verification cache) within a second instead of hanging.
        return {
            "default": {
                "BACKEND": "portal.cache.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": "keyportal",
                "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            }
        }
    if url in {"", "locmem://"}:
        # Room for the throttle counters of a flood from many addresses (Django's default of
        # 300 entries would let a flood evict them); each entry is a few hundred bytes.
        # Process-local: `check --deploy` warns about it in production (portal/checks.py).
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 100_000},
            }
        }
    raise ImproperlyConfigured(f"CACHE_URL must be redis://… or locmem://, not {url!r}")


def env_map(name: str, default: str = "") -> dict[str, str]:
    """`a=x,b=y` as {"a": "x", "b": "y"}; a pair without `=` or with an empty side is refused."""
    mapping: dict[str, str] = {}
    for pair in env_list(name, default):
        key, equals, value = (part.strip() for part in pair.partition("="))
        if not equals or not key or not value:
            raise ImproperlyConfigured(
                f"{name}: {pair!r} is not NAME=VALUE "
                "(write e.g. key-admins=admin,key-auditors=auditor)"
            )
        if key in mapping and mapping[key] != value:
            raise ImproperlyConfigured(f"{name}: {key!r} is mapped twice")
        mapping[key] = value
    return mapping


def env_words(name: str, default: str = "") -> list[str]:
    """Words separated by spaces or commas (OAuth scopes are written either way)."""
    return env(name, default).replace(",", " ").split()


# allauth's name for the one OpenID Connect provider the environment configures: its URLs
# are /accounts/oidc/<id>/login/ and the callback /accounts/oidc/<id>/login/callback/.
OIDC_PROVIDER_ID = "sso"


def oidc_providers(
    *, issuer: str, client_id: str, secret: str, label: str, scopes: list[str]
) -> dict[str, Any]:
    """SOCIALACCOUNT_PROVIDERS for django-allauth: one OpenID Connect app, or none.

    The app lives in settings, not in the database: the environment is the one place an
    operator configures single sign-on (docs/settings.md).
    """
    if not issuer:
        return {}
    return {
        "openid_connect": {
            # PKCE on top of the client secret: a stolen authorisation code is worth nothing.
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "provider_id": OIDC_PROVIDER_ID,
                    "name": label,
                    "client_id": client_id,
                    "secret": secret,
                    "settings": {"server_url": issuer, "scope": scopes},
                }
            ],
        }
    }


def form_action_sources(issuer: str) -> list[str]:
    """CSP form-action: this site, and the provider's origin when single sign-on is on.

    The single sign-on button posts here and is redirected to the provider; browsers hold a
    form's redirects to form-action too.
    """
    if not issuer:
        return ["'self'"]
    url = urllib.parse.urlsplit(issuer)
    return ["'self'", f"{url.scheme}://{url.netloc}"]
