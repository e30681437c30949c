"""The client's IP address, through django-ipware, configured explicitly (DESIGN §4).

Direct mode (KEYS_TRUSTED_PROXIES empty): only REMOTE_ADDR counts; every forwarded header is
ignored, since any client can send one. Proxy mode: KEYS_PROXY_HEADER is honoured only when
REMOTE_ADDR is one of the trusted proxies, and then only its right-most entry: the one our own
proxy wrote (whatever the client put before it is forgeable). No IP determined -> None.
"""

from django.conf import settings
from ipware import get_client_ip

from keys.models import ip_in_networks


def client_ip(request) -> str | None:
    remote_addr = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.KEYS_TRUSTED_PROXIES
    if proxies and ip_in_networks(remote_addr, proxies):
        ip, _routable = get_client_ip(
            request,
            request_header_order=[settings.KEYS_PROXY_HEADER],
            proxy_count=0,  # the last hop in the header is the one our proxy saw
            strict=False,
        )
    else:
        ip, _routable = get_client_ip(request, request_header_order=["REMOTE_ADDR"])
    return ip
