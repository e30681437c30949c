"""The one failure throttle: API calls, SCIM tokens, the portal and Django admin log-ins.

Failures are counted in the cache (with CACHE_URL=redis://… every process on every app
server shares them), in buckets, each with its limit and window (settings):

- API, per client network: KEYS_THROTTLE_MAX_FAILURES_PER_IP;
- API, per identifier (wrong passwords from an allowed IP): KEYS_THROTTLE_MAX_FAILURES_PER_KEY;
  both within KEYS_THROTTLE_WINDOW_SECONDS;
- SCIM, per client network (wrong bearer tokens): KEYS_THROTTLE_MAX_FAILURES_PER_IP in the
  same window;
- log-in, per account from one client network, or from one browser that logged in to that
  account before: LOGIN_THROTTLE_MAX_FAILURES, the hard limit;
- log-in, per client network (any user name, known or not):
  LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK;
- log-in, per account from everywhere: LOGIN_THROTTLE_ACCOUNT_BUDGET, which refuses nothing
  by itself; past it, each client network gets LOGIN_THROTTLE_MAX_FAILURES_PAST_BUDGET failures
  for that account instead (slower guessing from many networks, no lock-out of the person:
  their own browser keeps its budget, and a new network still gets its first try);
  all within LOGIN_THROTTLE_WINDOW_SECONDS.

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
from dataclasses import dataclass, replace

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


def scim_network(ip: str | None) -> Bucket | None:
    """Wrong SCIM bearer tokens from one client network (portal/scim): the API's limits, in a
    bucket of their own so that a SCIM flood does not lock that network's API keys."""
    if (net := network(ip)) is None:
        return None
    return Bucket(
        f"kp:fail-scim:{net}",
        settings.KEYS_THROTTLE_MAX_FAILURES_PER_IP,
        settings.KEYS_THROTTLE_WINDOW_SECONDS,
    )


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


def _account(username: str) -> str:
    # Hashed: the cache never holds user names (or a password typed into that field).
    return hashlib.sha256(username.casefold().encode()).hexdigest()[:40]


def _login_bucket(name: str, limit: int) -> Bucket:
    return Bucket(name, limit, settings.LOGIN_THROTTLE_WINDOW_SECONDS)


def _account_bucket(account: str) -> Bucket:
    return _login_bucket(f"login:fail-user:{account}", settings.LOGIN_THROTTLE_ACCOUNT_BUDGET)


@dataclass(frozen=True)
class LogInBuckets:
    """Where a failed log-in for one account counts, and which of those may refuse the next.

    From a browser that logged in to the account before, only `device` refuses: that person
    keeps their own budget whatever happens on their network or to the account elsewhere.
    From anywhere else, `pair` (the account from this client network) and `network` (any
    account from it) refuse. `account` (from everywhere) only tightens `pair` once past its
    budget, so that no failure count can lock the person out everywhere.
    """

    account: Bucket
    pair: Bucket | None
    network: Bucket | None
    device: Bucket | None

    @property
    def counting(self) -> list[Bucket]:
        """The buckets a failure counts in."""
        if self.device is not None:
            return [self.account, self.device]
        return [b for b in (self.account, self.pair, self.network) if b is not None]

    def refusing(self, values: dict) -> list[Bucket]:
        """The buckets that may refuse, with their limits as `values` (read) make them."""
        if self.device is not None:
            return [self.device]
        pair = self.pair
        if pair is not None and self.past_budget(values.get(self.account.name, 0)):
            limit = min(pair.limit, settings.LOGIN_THROTTLE_MAX_FAILURES_PAST_BUDGET)
            pair = replace(pair, limit=limit)
        return [b for b in (pair, self.network) if b is not None]

    @staticmethod
    def past_budget(account_failures: int | None) -> bool:
        return (account_failures or 0) >= settings.LOGIN_THROTTLE_ACCOUNT_BUDGET


def login_buckets(username: str, ip: str | None, device: str | None = None) -> LogInBuckets:
    """The buckets of a log-in as `username` from `ip`, by a browser that logged in to this
    account before as `device` (its id from the signed device cookie) or None."""
    account = _account(username)
    if device is not None:
        device_bucket = _login_bucket(
            f"login:fail-device:{device}", settings.LOGIN_THROTTLE_MAX_FAILURES
        )
        return LogInBuckets(_account_bucket(account), None, None, device_bucket)
    net = network(ip)
    # Without an address (authenticate() called without a request) all such calls share one
    # pair: they still meet a hard limit.
    pair = _login_bucket(
        f"login:fail-pair:{account}:{net or '-'}", settings.LOGIN_THROTTLE_MAX_FAILURES
    )
    network_bucket = (
        None
        if net is None
        else _login_bucket(
            f"login:fail-net:{net}", settings.LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK
        )
    )
    return LogInBuckets(_account_bucket(account), pair, network_bucket, None)


def login_locked_for(buckets: LogInBuckets) -> int:
    """Seconds until a log-in in these buckets may be tried (one cache read); 0 if now."""
    values = cache_get_many(cache_names(buckets.counting))
    return retry_after(buckets.refusing(values), values)


def count_login_failure(buckets: LogInBuckets) -> dict[Bucket, int | None]:
    """Count one failed log-in in each of its buckets; return each bucket's count so far."""
    return {bucket: count_failure(bucket) for bucket in buckets.counting}


# Wrong passwords for an account since its last successful log-in, to tell the person then:
# kept long, and only for existing accounts (by id), so guessed names cannot fill the cache.
UNSEEN_SECONDS = 90 * 24 * 3600


def _unseen(account_id: int) -> list[str]:
    name = f"login:unseen:{account_id}"
    return [name, name + ":since"]


def count_unseen_failure(account_id: int) -> None:
    """Count a wrong password for the person to hear of at their next log-in."""
    name, since = _unseen(account_id)
    cache_count(name, since, timeout=UNSEEN_SECONDS)


def take_unseen_failures(account_id: int) -> int:
    """The wrong passwords counted since the account's last log-in, forgotten once read."""
    names = _unseen(account_id)
    count = cache_get_many(names).get(names[0], 0)
    if count:
        cache_delete_many(names)
    return count


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


def clear(bucket: Bucket | None) -> None:
    """Forget the bucket's failures (a log-in succeeded there)."""
    if bucket is None:
        return
    cache_delete_many([bucket.name, bucket.since])
