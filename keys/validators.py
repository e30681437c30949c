"""Field rules that need no database: the shape of an allowed network and of a name.

The key model (keys/models/key.py) calls these from `ApiKey.validated()`; they raise
ValidationError with a message meant for the person who typed the value.
"""

import ipaddress
import re
import unicodedata
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError

from keys.lib.networks import unmapped_network

MAX_ALLOWED_IPS = 50


def normalise_network(text: str) -> str:
    """Return an allowed IP entry in canonical form (network_of), no wider than the
    settings allow, or raise ValidationError."""
    network = ipaddress.ip_network(network_of(text))
    widest = settings.KEYS_MIN_PREFIX_V4 if network.version == 4 else settings.KEYS_MIN_PREFIX_V6
    if network.prefixlen < widest:
        # An allowlist restricts: a range this wide (0.0.0.0/0 at the extreme) would let a
        # stolen password in from almost anywhere.
        raise ValidationError(
            "“%(value)s” is too wide: an allowed range may be at most /%(widest)s for IPv%(v)s.",
            code="too_wide",
            params={"value": (text or "").strip()[:60], "widest": widest, "v": network.version},
        )
    return str(network)


def network_of(text: str) -> str:
    """Return an IPv4/IPv6 address or CIDR range in canonical form, or raise ValidationError.

    A single address becomes a /32 or /128 network; an IPv4-mapped IPv6 address becomes its
    IPv4 form, so it matches the IPv4 clients it stands for. Host bits in a range are an
    error, not silently dropped: 10.0.0.1/8 is probably a typo for 10.0.0.0/8 or 10.0.0.1.
    """
    value = (text or "").strip()
    if not value:
        raise ValidationError("Enter an IP address or CIDR range.", code="required")
    if "%" in value:  # an IPv6 zone (fe80::1%eth0) names a local interface, not a client
        raise ValidationError(
            "“%(value)s” has an IPv6 zone (%%…); enter the address without it.",
            code="zone",
            params={"value": value[:60]},
        )
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(
            "“%(value)s” is not an IPv4 or IPv6 address or CIDR range.",
            code="invalid",
            params={"value": value[:60]},
        ) from None
    if network.network_address != ipaddress.ip_interface(value).ip and "/" in value:
        raise ValidationError(
            "“%(value)s” has host bits set; did you mean %(network)s?",
            code="host_bits",
            params={"value": value, "network": network},
        )
    network = unmapped_network(network)
    return str(network)


def allowlist(entries: Iterable[str]) -> list[str]:
    """The allowed IPs of a key, normalised; or ValidationError listing every broken entry.

    The one home of the allowlist rules: each entry's shape and width (normalise_network),
    no duplicates, at most MAX_ALLOWED_IPS, and at least one unless KEYS_REQUIRE_ALLOWED_IPS
    is off. Blank entries are ignored (an emptied row is how a row is removed).
    """
    errors, networks = [], []
    for entry in entries:
        if not (entry or "").strip():
            continue
        try:
            networks.append(normalise_network(entry))
        except ValidationError as error:
            errors.extend(error.messages)
    if len(networks) > MAX_ALLOWED_IPS:
        errors.append(f"A key can have at most {MAX_ALLOWED_IPS} allowed IP entries.")
    if len(set(networks)) != len(networks):
        errors.append("Each allowed IP may be listed only once.")
    if not networks and not errors and settings.KEYS_REQUIRE_ALLOWED_IPS:
        errors.append("Add at least one allowed IP address or range.")
    if errors:
        raise ValidationError(errors)
    return networks


# Unicode categories no name may hold: controls (a newline forges a log or CSV line),
# format characters (right-to-left overrides disguise a name) and line/paragraph separators.
_FORBIDDEN_IN_NAMES = {"Cc", "Cf", "Zl", "Zp"}


def validate_no_control_characters(value: str) -> None:
    """Refuse a name (of a key or a user) holding control or invisible format characters."""
    if any(unicodedata.category(char) in _FORBIDDEN_IN_NAMES for char in value or ""):
        raise ValidationError(
            "Names cannot hold control or invisible formatting characters.",
            code="control_characters",
        )


# A route's host: DNS labels (letters, digits, hyphens), optionally a port.
_HOST_RE = re.compile(
    r"(?=.{1,253}(:|$))[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
    r"(:[0-9]{1,5})?"
)
# A path prefix: printable ASCII without spaces, query, fragment, backslash or percent.
_PREFIX_RE = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")


def validate_route_host(value: str) -> None:
    """Refuse a route host that is not a DNS name (with an optional port); the route
    stores it in lower case."""
    if value and not _HOST_RE.fullmatch(value.strip().lower().rstrip(".")):
        raise ValidationError(
            "Enter a host name such as api.example.org (no scheme or path).",
            code="host",
        )


def validate_path_prefix(value: str) -> None:
    """Refuse a path prefix the gateway check could not match safely.

    It starts and ends with "/" (so /risks/ never also claims /risks-archive/), holds no
    dot segment, empty segment, percent-escape, query or fragment: the check compares it
    with the request's decoded, dot-free path, so an escaped or dotted prefix never matches.
    """
    segments = value.split("/")[1:-1]
    if (
        not value.startswith("/")
        or not value.endswith("/")
        or not _PREFIX_RE.fullmatch(value)
        or any(segment in {"", ".", ".."} for segment in segments)
    ):
        raise ValidationError(
            "Enter a path prefix that starts and ends with / and holds no //, . or .. "
            "segment, %, ? or #, e.g. /risks/.",
            code="path_prefix",
        )
