"""The one failure throttle: API calls, the portal log-in and the Django admin log-in.

Failures are counted in the cache (with CACHE_URL=redis://… every process on every app
server shares them), in buckets, each with its limit and window (settings):

- API, per client network: KEYS_THROTTLE_MAX_FAILURES_PER_IP;
- API, per identifier (wrong passwords from an allowed IP): KEYS_THROTTLE_MAX_FAILURES_PER_KEY;
  both within KEYS_THROTTLE_WINDOW_SECONDS;
- log-in, per account (the user name, from every address): LOGIN_THROTTLE_MAX_FAILURES;
- log-in, per client network (any user name, known or not):
  LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK; both within LOGIN_THROTTLE_WINDOW_SECONDS.

A client network is an IPv4 address or an IPv6 /64: one IPv6 host usually holds a whole /64,
so counting each address would give it 2**64 budgets. A bucket's window opens at its first
failure; once the bucket holds its limit, whatever it covers is refused until the window
closes, before any password hashing. Its `:since` entry says when the window opened, so the
wait announced (Retry-After, "Try again in N minutes") is exact.

One try per window: while only an identifier is locked (by wrong passwords from allowed
addresses, perhaps someone else's in the same allowed range), a client network that has not
failed for that identifier in the window may still try one password (one Argon2): a correct
one gets in, and is remembered from then on. So someone else's failures cannot lock out an
integration whose password was not verified recently; at worst the lock costs one Argon2 per
allowed client network per window.

An unavailable cache throttles nothing (logged): the password is still checked, and refusing
everyone while Redis is down would be worse than going unthrottled for that time.
"""

import hashlib
import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from keys.lib.cache_counters import cache_add, cache_count, cache_delete_many, cache_get_many
from keys.lib.networks import around, display_network

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bucket:
    """Failures counted under `name`; `limit` of them in `window` seconds lock it."""

    name: str
    limit: int
    window: int

    @property
    def since(self) -> str:
        return self.name + ":since"


def network(ip: str | None) -> str | None:
    """The client network an address belongs to: itself for IPv4, its /64 for IPv6."""
    if ip is None:
        return None
    try:
        return display_network(around(ip.partition("%")[0], v4_prefix=32))
    except ValueError:
        return ip


# --- the buckets of each path --------------------------------------------------------------


def api_network(ip: str | None) -> Bucket | None:
    if (net := network(ip)) is None:
        return None
    return Bucket(
        f"kp:fail-ip:{net}",
        settings.KEYS_THROTTLE_MAX_FAILURES_PER_IP,
        settings.KEYS_THROTTLE_WINDOW_SECONDS,
    )


def api_identifier(identifier: str) -> Bucket:
    return Bucket(
        f"kp:fail-id:{identifier}",
        settings.KEYS_THROTTLE_MAX_FAILURES_PER_KEY,
        settings.KEYS_THROTTLE_WINDOW_SECONDS,
    )


def api_buckets(ip: str | None, identifier: str) -> list[Bucket]:
    return [bucket for bucket in (api_network(ip), api_identifier(identifier)) if bucket]


def api_one_try(ip: str | None, identifier: str) -> Bucket | None:
    """The gate of this client network's one try at the identifier's password in a window
    (see the module's docstring); set by that try, or by any failure from the network."""
    if (net := network(ip)) is None:
        return None
    return Bucket(f"kp:one-try:{identifier}:{net}", 1, settings.KEYS_THROTTLE_WINDOW_SECONDS)


def one_try_open(ip: str | None, identifier: str, values: dict) -> bool:
    """True if only the identifier is locked and this client network's try is not taken.

    `values` holds the entries of cache_names(api_buckets(...)) and the gate's name."""
    gate, net = api_one_try(ip, identifier), api_network(ip)
    if gate is None or net is None or gate.name in values:
        return False
    return values.get(net.name, 0) < net.limit and bool(
        retry_after([api_identifier(identifier)], values)
    )


def take_one_try(ip: str | None, identifier: str) -> bool:
    """Close this client network's gate for the window; True if it was open until now."""
    gate = api_one_try(ip, identifier)
    return gate is not None and cache_add(gate.name, gate.window)


def login_account(username: str) -> Bucket:
    # Hashed: the cache never holds user names (or a password typed into that field).
    digest = hashlib.sha256(username.casefold().encode()).hexdigest()[:40]
    return Bucket(
        f"login:fail-user:{digest}",
        settings.LOGIN_THROTTLE_MAX_FAILURES,
        settings.LOGIN_THROTTLE_WINDOW_SECONDS,
    )


def login_buckets(username: str, ip: str | None) -> list[Bucket]:
    buckets = [login_account(username)]
    if (net := network(ip)) is not None:
        buckets.append(
            Bucket(
                f"login:fail-net:{net}",
                settings.LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK,
                settings.LOGIN_THROTTLE_WINDOW_SECONDS,
            )
        )
    return buckets


# --- reading and counting ------------------------------------------------------------------


def cache_names(buckets: list[Bucket]) -> list[str]:
    """The cache entries retry_after() reads, for a caller that reads them with others."""
    return [name for bucket in buckets for name in (bucket.name, bucket.since)]


def retry_after(buckets: list[Bucket], values: dict) -> int:
    """Seconds until every locked bucket's window closes; 0 if none is locked.

    `values` holds the entries of cache_names(buckets) as read from the cache.
    """
    now = timezone.now().timestamp()
    waits = [
        math.ceil(values.get(bucket.since, now) + bucket.window - now)
        for bucket in buckets
        if values.get(bucket.name, 0) >= bucket.limit
    ]
    return max(1, *waits) if waits else 0


def locked_for(buckets: list[Bucket]) -> int:
    """Seconds until the buckets let an attempt through (one cache read); 0 if they do now."""
    return retry_after(buckets, cache_get_many(cache_names(buckets)))


def count_failure(bucket: Bucket | None) -> int | None:
    """Count one failure in the bucket (the first one opens its window); return the count
    so far, None if nothing could be counted."""
    if bucket is None:
        return None
    failures = cache_count(bucket.name, bucket.since, timeout=bucket.window)
    if failures == bucket.limit:
        logger.warning("Throttling %s after %d failures", bucket.name, failures)
    return failures


def clear(bucket: Bucket) -> None:
    """Forget the bucket's failures (a log-in succeeded for that account)."""
    cache_delete_many([bucket.name, bucket.since])
