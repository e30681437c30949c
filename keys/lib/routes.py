"""Which catalogue API a request belongs to, by host and path (docs/design.md §9).

Plain functions over a route table of (host, path prefix, API slug) rows, most specific
first: a route with a host before one without, a longer prefix before a shorter one. The
first route whose host and prefix match names the API; none matches, no API.

Paths are compared after percent-decoding, and a path the gateway and the service behind it
could read differently is refused outright rather than guessed at: a dot segment
(/risks/../admin/), an empty segment (//), a backslash, a control character, an escaped
slash. So a key for /risks/ never reaches another API by a path the upstream normalises.
"""

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

Route = tuple[str, str, str]  # (host or "", path prefix, API slug)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")


def canonical_path(uri: str) -> str | None:
    """The decoded path of a request URI (path and query, or an absolute URI), or None if it
    is not one path every server reads alike."""
    if not uri:
        return None
    if not uri.startswith("/"):
        if "://" not in uri:
            return None
        uri = urlsplit(uri).path or "/"
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if "%2f" in path.lower() or "%5c" in path.lower():
        return None  # an escaped slash or backslash: one segment here, two behind
    decoded = unquote(path, errors="strict") if "%" in path else path
    if _UNSAFE.search(decoded) or ("%" in decoded and decoded != unquote(decoded)):
        return None  # a control character, a backslash, or escaped twice
    segments = decoded.split("/")[1:]
    if any(segment in {".", ".."} for segment in segments) or "" in segments[:-1]:
        return None
    return decoded


def normal_host(host: str | None) -> str:
    """A Host header as routes name it: lower case, no trailing dot, no default port."""
    host = (host or "").strip().lower()
    if host.endswith((":80", ":443")):
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def api_for(table: Sequence[Route], host: str, path: str) -> str | None:
    """The API of the first route in `table` that matches `host` and `path`.

    A prefix matches the paths below it and itself without its final slash (/risks/ matches
    /risks/7 and /risks). A route's host matches with or without the request's port.
    """
    bare_host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    for route_host, prefix, api in table:
        if route_host and route_host not in (host, bare_host):
            continue
        if path.startswith(prefix) or path == prefix[:-1]:
            return api
    return None
