"""System checks on the settings: `manage.py check`, runserver and migrate stop on an Error.

gunicorn runs no system checks, so portal/wsgi.py calls refuse_to_serve() for the checks that
decide who the client is: a server never starts with a set-up that lets a client pick its IP.
"""

import importlib.metadata
import ipaddress
import re
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


def refuse_to_serve() -> None:
    """Raise ImproperlyConfigured if a start-up check finds an Error (for the app server)."""
    found: Sequence[checks.CheckMessage] = [*check_trusted_proxies(), *check_ipware_version()]
    if errors := [message for message in found if message.is_serious()]:
        raise ImproperlyConfigured("\n".join(message.msg for message in errors))
