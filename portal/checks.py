"""System checks on the settings: `manage.py check`, runserver and migrate stop on an Error.

gunicorn runs no system checks, so portal/wsgi.py calls refuse_to_serve() for the checks that
decide who the client is and who may sign in: a server never starts with a set-up that lets a
client pick its IP, or with single sign-on settings that cannot work.
"""

import importlib.metadata
import ipaddress
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from keys.lib.networks import unmapped_network

# The widest trusted-proxy range: anything wider trusts a large part of the internet to say
# who the client is.
_WIDEST_PROXY_PREFIX = {4: 8, 6: 32}
# Said by every start-up Error: gunicorn stops on them too, in portal.wsgi (see refuse_to_serve).
_SERVER_REFUSES = "Until it is fixed the app server refuses to start (ImproperlyConfigured)."


@checks.register(checks.Tags.security)
def check_trusted_proxies(**kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse a proxy set-up that is mistyped or lets any client name its own address."""
    # A mistyped entry would silently leave proxy mode off (every caller would then appear
    # as the proxy), and a catch-all would let any client name its own address.
    errors: list[checks.CheckMessage] = []
    for entry in settings.KEYS_TRUSTED_PROXIES:
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            errors.append(
                checks.Error(
                    f"KEYS_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR range "
                    "without host bits.",
                    hint=_SERVER_REFUSES,
                    id="portal.E001",
                )
            )
            continue
        network = unmapped_network(network)
        if network.prefixlen < (widest := _WIDEST_PROXY_PREFIX[network.version]):
            errors.append(
                checks.Error(
                    f"KEYS_TRUSTED_PROXIES: {entry!r} trusts too much of the internet; list "
                    f"your proxies' addresses (at most a /{widest}).",
                    hint=_SERVER_REFUSES,
                    id="portal.E002",
                )
            )
    header = settings.KEYS_PROXY_HEADER
    if not re.fullmatch(r"HTTP_[A-Z0-9_]+", header):
        errors.append(
            checks.Error(
                f"KEYS_PROXY_HEADER: {header!r} is not a request.META name; write the header "
                "as Django sees it, e.g. HTTP_X_FORWARDED_FOR for X-Forwarded-For.",
                hint=_SERVER_REFUSES,
                id="portal.E003",
            )
        )
    return errors


@checks.register(checks.Tags.compatibility)
def check_ipware_version(**kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse a django-ipware major version the client IP rules were not tested with."""
    installed = importlib.metadata.version("django-ipware")
    tested = settings.IPWARE_TESTED_MAJOR
    if int(installed.split(".")[0]) == tested:
        return []
    return [
        checks.Error(
            f"django-ipware {installed} is installed; Key Portal's client IP rules are tested "
            f"with {tested}.x. Install django-ipware {tested}.x (constraints.txt).",
            hint=_SERVER_REFUSES,
            id="portal.E004",
        )
    ]


@checks.register(checks.Tags.caches, deploy=True)
def check_shared_cache(**kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when production counts throttles in each process's own memory."""
    if settings.DEBUG or not issubclass(
        import_string(settings.CACHES["default"]["BACKEND"]), LocMemCache
    ):
        return []
    return [
        checks.Warning(
            "The default cache is process-local (LocMemCache): with several workers or app "
            "servers each counts its own API and log-in throttles, and the limits multiply "
            "by their number.",
            hint="Set CACHE_URL=redis://… (docs/deploy.md); local memory suits one process only.",
            id="portal.W001",
        )
    ]


@checks.register(checks.Tags.security)
def check_single_sign_on(**kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse single sign-on settings that lock everyone out or cannot work (docs/settings.md)."""
    from portal.roles import ROLES  # not at the top: it imports Django's auth machinery

    found: list[checks.CheckMessage] = []

    def error(message: str, number: int) -> None:
        found.append(checks.Error(message, hint=_SERVER_REFUSES, id=f"portal.E{number:03}"))

    def warning(message: str, number: int, hint: str) -> None:
        found.append(checks.Warning(message, hint=hint, id=f"portal.W{number:03}"))

    issuer = settings.OIDC_ISSUER
    if settings.SSO_ONLY and not issuer:
        error("SSO_ONLY is on but OIDC_ISSUER is not set: nobody could sign in.", 10)
    if issuer:
        url = urllib.parse.urlsplit(issuer)
        if url.scheme not in {"https", "http"} or not url.hostname or url.query or url.fragment:
            error(
                f"OIDC_ISSUER: {issuer!r} is not the provider's issuer URL "
                "(e.g. https://login.example.com/realms/staff).",
                11,
            )
        elif url.scheme == "http" and not settings.DEBUG and url.hostname not in _LOOPBACK:
            warning(
                f"OIDC_ISSUER: {issuer!r} is plain HTTP: the client secret and the tokens "
                "cross the network readable.",
                10,
                "Use the provider's https:// issuer URL.",
            )
        missing = [
            name for name in ("OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET") if not getattr(settings, name)
        ]
        if missing:
            error(f"OIDC_ISSUER is set but {' and '.join(missing)} not.", 12)
    elif any(getattr(settings, name) for name in ("OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")):
        warning(
            "OIDC_CLIENT_ID or OIDC_CLIENT_SECRET is set but OIDC_ISSUER is not: single "
            "sign-on is off.",
            11,
            "Set OIDC_ISSUER to the provider's issuer URL, or remove the OIDC_ settings.",
        )
    for claim_value, role in settings.OIDC_ROLE_MAP.items():
        if role not in ROLES:
            error(
                f"OIDC_ROLE_MAP: {claim_value}={role} names no role; the roles are "
                f"{', '.join(ROLES)}.",
                13,
            )
    if settings.SSO_BREAK_GLASS_ACCOUNTS and not settings.SSO_ONLY:
        warning(
            "SSO_BREAK_GLASS_ACCOUNTS is set but SSO_ONLY is off: every local account may "
            "use its password anyway.",
            12,
            "Set SSO_ONLY=1, or remove SSO_BREAK_GLASS_ACCOUNTS.",
        )
    if settings.SSO_ONLY and issuer and not settings.SSO_BREAK_GLASS_ACCOUNTS:
        warning(
            "SSO_ONLY is on with no SSO_BREAK_GLASS_ACCOUNTS: while the provider is down, "
            "nobody can sign in.",
            13,
            "Name a local administrator account (or two) in SSO_BREAK_GLASS_ACCOUNTS.",
        )
    return found


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def refuse_to_serve() -> None:
    """Raise ImproperlyConfigured if a start-up check finds an Error (for the app server)."""
    found: Sequence[checks.CheckMessage] = [
        *check_trusted_proxies(),
        *check_ipware_version(),
        *check_single_sign_on(),
    ]
    if errors := [message for message in found if message.is_serious()]:
        raise ImproperlyConfigured("\n".join(message.msg for message in errors))
