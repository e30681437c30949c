"""The client's IP address, through django-ipware, configured explicitly (docs/design.md §4).

Direct mode (KEYS_TRUSTED_PROXIES empty): only REMOTE_ADDR counts; every forwarded header is
ignored, since any client can send one. Proxy mode: KEYS_PROXY_HEADER is honoured only when
REMOTE_ADDR is one of the trusted proxies, and then only its right-most entry: the one our own
proxy wrote (whatever the client put before it is forgeable). No IP determined -> None.

Every ipware option is passed explicitly, so no IPWARE_* setting can widen what is trusted.
IPv4-mapped IPv6 addresses come back in their IPv4 form.
"""

import functools

from django.conf import settings
from django.http import HttpRequest
from ipware import get_client_ip

from keys.lib.networks import ip_in_networks


def from_trusted_proxy(request) -> bool:
    """True if the connection comes from one of KEYS_TRUSTED_PROXIES (never in direct mode)."""
    proxies = settings.KEYS_TRUSTED_PROXIES
    return bool(proxies) and ip_in_networks(request.META.get("REMOTE_ADDR") or "", proxies)


def client_ip(request) -> str | None:
    # proxy_count=0 picks the last hop, the one our proxy saw; strict=False so that a client
    # cannot void the header by prepending garbage to it.
    header = settings.KEYS_PROXY_HEADER if from_trusted_proxy(request) else "REMOTE_ADDR"
    # ipware sees only the one header it may use: no spelling variant of another header
    # (it folds case and dashes) can stand in for it, and it has less to scan. Of a forwarded
    # chain it sees only the right-most element, the one our proxy wrote: if that is not an
    # address ("unknown", "for=_hidden"), there is no IP, rather than the client's choice.
    value = request.META.get(header)
    if not isinstance(value, str):
        return None
    if header != "REMOTE_ADDR":
        value = value.rsplit(",", 1)[-1]
    return _address_in(header, value)


@functools.lru_cache(maxsize=4096)
def _address_in(header: str, value: str) -> str | None:
    # A pure function of its arguments, and callers come back from the same few addresses:
    # remembered, ipware's parsing is paid once per address, not on every API call.
    request = HttpRequest()
    request.META = {header: value}
    ip, _routable = get_client_ip(
        request,
        proxy_order="left-most",
        proxy_count=0,
        proxy_trusted_ips=None,
        request_header_order=[header],
        strict=False,
        algorithm="modern",
    )
    return ip
